// Turns a zod verdict into Pulumi check failures: `pulumi preview` then stops before any host is touched,
// with one line per bad key.
import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";

export function checkInputs<S extends z.ZodType>(schema: S, news: Record<string, unknown>): pulumi.dynamic.CheckResult {
  const parsed = schema.safeParse(withoutProvider(news));
  if (parsed.success) {
    return { inputs: parsed.data as Record<string, unknown> };
  }
  return {
    failures: parsed.error.issues.map((issue) => ({
      property: issue.path.map(String).join(".") || "(inputs)",
      reason: issue.message,
    })),
  };
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
