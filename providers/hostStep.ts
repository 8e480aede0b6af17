import { isDeepStrictEqual } from "node:util";

/** One command for the SSH layer to run (`host.run(step.argv, step)`): an argv array, never a shell string. */
export interface HostStep {
  /** What the step does, for preview output and logs. */
  readonly describe: string;
  readonly argv: readonly string[];
  /** Bytes to feed the command's standard input. */
  readonly stdin?: string;
  /** For commands that may outlast the SSH layer's default (downloads, decompression). */
  readonly timeoutMs?: number;
  /**
   * After the command succeeds, run `argv` every second until its trimmed standard output equals
   * `until`; fail with `timeoutMessage` after `timeoutSeconds`. Used where virsh returns before the
   * guest has done what was asked (`virsh shutdown` only sends the ACPI event).
   */
  readonly waitFor?: {
    readonly argv: readonly string[];
    readonly until: string;
    readonly timeoutSeconds: number;
    readonly timeoutMessage: string;
  };
}

// The system instance, whoever the SSH user is: without --connect, a non-root member of the
// libvirt group would talk to qemu:///session and see none of the host's pools or guests.
// LC_ALL=C because virsh translates its output (domstate, pool-info), which steps and facts parse.
const VIRSH = ["env", "LC_ALL=C", "virsh", "--connect", "qemu:///system"] as const;

/** argv for `virsh <command> <args...>` against qemu:///system with untranslated output. */
export function virsh(command: string, ...args: string[]): string[] {
  return [...VIRSH, command, ...args];
}

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
