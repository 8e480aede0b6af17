// Turns a zod verdict into Pulumi check failures: `pulumi preview` then stops before any host is touched,
// with one line per bad key.
import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";

/** The engine's placeholder, during preview, for a value only known after apply (another resource's output). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export const hasUnknown = (value: unknown): boolean => JSON.stringify(value ?? null).includes(UNKNOWN);

export type Validation<T> = { ok: true; data: T } | { ok: false; failures: pulumi.dynamic.CheckFailure[] };

/**
 * Validates `value`, naming each failure `prefix.path`. A value still unknown at preview cannot be
 * judged: its issues are left for create/update, which parse again once it is known.
 */
export function validate<S extends z.ZodType>(schema: S, value: unknown, prefix = ""): Validation<z.output<S>> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return { ok: true, data: parsed.data };
  const judged = parsed.error.issues.filter((issue) => !unknownAlong(value, issue.path));
  if (judged.length === 0) return { ok: true, data: value as z.output<S> };
  return {
    ok: false,
    failures: judged.map((issue) => ({
      property: [prefix, ...issue.path.map(String)].filter((p) => p !== "").join(".") || prefix || "(inputs)",
      reason: issue.message,
    })),
  };
}

function unknownAlong(value: unknown, path: readonly PropertyKey[]): boolean {
  let at: unknown = value;
  for (const key of [undefined, ...path]) {
    if (key !== undefined) at = at !== null && typeof at === "object" ? (at as Record<PropertyKey, unknown>)[key] : undefined;
    if (at === UNKNOWN) return true;
  }
  return false;
}

export function checkInputs<S extends z.ZodType>(schema: S, news: Record<string, unknown>): pulumi.dynamic.CheckResult {
  const result = validate(schema, withoutProvider(news));
  return result.ok ? { inputs: result.data as Record<string, unknown> } : { failures: result.failures };
}

/** Parses inputs that `check` already accepted (diff/create/update get them back from the engine). */
export function parseChecked<S extends z.ZodType>(schema: S, value: Record<string, unknown>): z.output<S> {
  return schema.parse(withoutProvider(value));
}

/** The engine adds the serialized provider to every property bag under `__provider`; it is not an input. */
function withoutProvider(props: Record<string, unknown>): Record<string, unknown> {
  const { __provider: _, ...rest } = props;
  return rest;
}
