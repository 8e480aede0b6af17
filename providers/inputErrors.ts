import { z } from "zod";

// Input messages for zod: the value found and a value that would work. The key is the issue's
// path, which validate (providers/check.ts) hands to Pulumi as the failing property.

/** How a rejected input appears in messages: strings quoted, as the user would write them. */
export const describeInput = (value: unknown): string => JSON.stringify(value) ?? String(value);

/** describeInput shortened, so a pasted blob does not flood the message. */
export function shown(value: unknown): string {
  const text = describeInput(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

type ErrorOption = { error: (issue: z.core.$ZodRawIssue) => string | undefined };

/** For a base type or a check: "<value> is not <what>; write for example <example>". */
export function expected(what: string, example: string): ErrorOption {
  return {
    error: (issue) =>
      issue.input === undefined
        ? `is missing: give ${what}, for example ${example}`
        : `${shown(issue.input)} is not ${what}; write for example ${example}`,
  };
}

/** For a refinement whose message depends on the value. */
export function explain(message: (value: never) => string): ErrorOption {
  return { error: (issue) => message(issue.input as never) };
}

/** For a strict object: unknown keys are listed with the keys that exist (also after .extend). */
export const strictKeys: ErrorOption = {
  error: (issue) => {
    if (issue.code !== "unrecognized_keys") return undefined;
    const shape = (issue.inst as { _zod?: { def?: { shape?: object } } } | undefined)?._zod?.def?.shape ?? {};
    return `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}; the keys are ${Object.keys(shape).join(", ")}`;
  },
};
