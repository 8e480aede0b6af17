// How the libvirt objects' fields change: each field of a pool, volume or domain has a rule (replace
// the object, redefine it and restart, or apply in place), and diffFields lists what differs.
import { isDeepStrictEqual } from "node:util";

/** One difference between what is declared and what is there. */
export interface FieldChange {
  readonly field: string;
  /** What is there now (or was declared before). */
  readonly from: unknown;
  /** What is declared. */
  readonly to: unknown;
  /** False when the change needs the object deleted and created again (delete before create). */
  readonly applyInPlace: boolean;
  /** True when the object is running and the change takes effect only after a restart. */
  readonly needsRestart: boolean;
}

/** How a change to one field is applied. */
export interface FieldRule {
  readonly replaces: boolean;
  /** The running object keeps the old value until it restarts. */
  readonly restarts: boolean;
}

/** The three kinds of field: another object, redefined but felt at the next start, applied live. */
export const REPLACE: FieldRule = { replaces: true, restarts: false };
export const REDEFINE: FieldRule = { replaces: false, restarts: true };
export const IN_PLACE: FieldRule = { replaces: false, restarts: false };

/**
 * The fields that differ between `from` and `to`, with how each is applied. Fields where `to` is
 * undefined are not compared (nothing declared, so anything is fine). A rule for every field is
 * required by the type, so a new field cannot be added without deciding how it changes.
 */
export function diffFields<T extends object>(
  from: T,
  to: { readonly [K in keyof T]: T[K] | undefined },
  rules: { readonly [K in keyof T]-?: FieldRule },
  running: boolean,
): FieldChange[] {
  const changes: FieldChange[] = [];
  for (const field of Object.keys(rules) as (keyof T & string)[]) {
    const rule: FieldRule = rules[field];
    if (to[field] === undefined || isDeepStrictEqual(from[field], to[field])) continue;
    changes.push({
      field,
      from: from[field],
      to: to[field],
      applyInPlace: !rule.replaces,
      needsRestart: !rule.replaces && rule.restarts && running,
    });
  }
  return changes;
}
