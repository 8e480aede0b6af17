// HostFile: one file on the host with exactly the given content. The original bytes are backed up
// before the first write and put back on delete (a file that did not exist is removed again), unless
// the file was edited since: then it stays, and delete says where the original is.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { HostResource, hostResourceProvider } from "./hostResource";
import { ConnectionInput } from "./ssh/connection";
import { BACKUP_ROOT } from "./hostRecords";
import { RemoteHost, RestoreOutcome, sha256Hex } from "./ssh/host";

export type Backup = Buffer | "absent" | undefined;

const sameBytes = (file: Buffer | undefined, other: string | Buffer | "absent") =>
  other === "absent" ? file === undefined : file !== undefined && file.equals(Buffer.from(other));

/**
 * Pure, for a file a resource owns whole and plans without state: a backup from an earlier run
 * belongs to this file while the file still holds the backup's bytes (nothing was written yet) or
 * the content we write (a run died before Pulumi recorded it: the file is ours). Anything else, a
 * backup left by `pulumi state delete` or by a destroy that kept a hand edit, would put old bytes
 * over the file's on destroy: the refusal says how to settle it, or undefined. It is raised when
 * the resource is created (nothing written yet), not in preview, which plans without state for a
 * resource that exists too, where a hand edit is drift to repair.
 */
export function staleBackupRefusal(path: string, content: string, current: Buffer | undefined, backup: Backup): string | undefined {
  if (backup === undefined || sameBytes(current, content) || sameBytes(current, backup)) return undefined;
  const saved = `${BACKUP_ROOT}${path}`;
  const settle =
    backup === "absent"
      ? `${saved}.absent says it did not exist before. If it should not exist, remove it: rm ${path} ${saved}.absent; ` +
        `if the file as it is now is the original, drop the marker: rm ${saved}.absent`
      : `If that backup is the original, put it back first: cp -p ${saved} ${path}; ` +
        `if the file as it is now is the original, drop the backup: rm ${saved}`;
  return (
    `${path} matches neither the backup an earlier vfio-host run kept nor the content to write, so destroy could not ` +
    `tell which bytes to give back. ${settle}`
  );
}

/**
 * Puts back the original of a file owned whole, but only while the file still holds what this stack
 * last wrote (`sha256`). A file edited since stays as it is, and the message says where the original
 * is and how to put it back by hand. The delete still succeeds: one that failed would block every
 * later destroy of the stack.
 */
export async function restoreWholeFile(host: RemoteHost, path: string, sha256: string, rebuild?: string): Promise<RestoreOutcome> {
  const outcome = await host.restoreBackup(path, { ifSha256: sha256 });
  if (outcome !== "edited") return outcome;
  const saved = `${BACKUP_ROOT}${path}`;
  const then = rebuild ? `, then ${rebuild}` : "";
  console.error(
    (await host.readBackup(path)) === "absent"
      ? `${host.label}: ${path} NOT removed: it was changed after vfio-host wrote it, so destroy leaves it in place. ` +
          `It did not exist before vfio-host created it (${saved}.absent records that); to remove it by hand: rm ${path} ${saved}.absent${then}`
      : `${host.label}: ${path} NOT restored: it was changed after vfio-host wrote it, so destroy leaves it as it is. ` +
          `The original is kept in ${saved}; to put it back by hand: cp -p ${saved} ${path}${then}`,
  );
  return outcome;
}

/**
 * The backups of files a resource edits in part, as text for its planners: "" for a file that did
 * not exist before (an empty file edits the same way), undefined where there is no backup.
 */
export async function readBackupTexts(host: RemoteHost, paths: readonly string[]): Promise<(string | undefined)[]> {
  return (await Promise.all(paths.map((p) => host.readBackup(p)))).map(backupText);
}

export const backupText = (backup: Backup): string | undefined => (backup === "absent" ? "" : backup?.toString("utf8"));

/** The state of a file owned whole: the hash of what this stack last wrote to it. */
export interface WrittenFile {
  sha256: string;
}

export const remotePath = z
  .string()
  .regex(/^\/[^\0\n]*$/, "must be an absolute path without newlines, e.g. /etc/modules-load.d/tun.conf")
  .refine((p) => !p.split("/").includes(".."), "must not contain `..`");

const HostFileInputs = z.strictObject({
  path: remotePath,
  content: z.string(),
  mode: z
    .string()
    .regex(/^0?[0-7]{3}$/, "mode must be octal such as 0644")
    .default("0644"),
});
type Inputs = z.output<typeof HostFileInputs>;

interface HostFilePlan {
  inputs: Inputs;
  current: Buffer | undefined;
  /** Planned without state: why creating this resource must not write (see staleBackupRefusal). */
  refusal?: string;
}

/** State recorded before this field existed holds nothing; the file was then last written with the inputs' content. */
type HostFileState = Partial<WrittenFile>;

export const hostFileProvider = hostResourceProvider<Inputs, HostFilePlan, HostFileState>({
  schema: HostFileInputs,
  identity: (inputs) => inputs.path,
  replaceOnChange: ["path"],
  async plan(host, inputs, state) {
    const current = await host.readFile(inputs.path);
    const refusal = state ? undefined : staleBackupRefusal(inputs.path, inputs.content, current, await host.readBackup(inputs.path));
    return { inputs, current, refusal };
  },
  describe: ({ inputs, current }) =>
    sameBytes(current, inputs.content) ? [] : [`${inputs.path}: ${current === undefined ? "create" : "rewrite"} (${Buffer.byteLength(inputs.content)} bytes)`],
  async apply(host, { inputs, current, refusal }) {
    if (refusal) throw new Error(refusal);
    if (!sameBytes(current, inputs.content)) {
      await host.backupOnce(inputs.path);
      await host.writeFileAtomic(inputs.path, inputs.content, { mode: inputs.mode });
    }
    return { sha256: sha256Hex(inputs.content) };
  },
  async revert(host, inputs, state) {
    await restoreWholeFile(host, inputs.path, state?.sha256 ?? sha256Hex(inputs.content));
  },
});

export interface HostFileArgs {
  connection: pulumi.Input<ConnectionInput>;
  path: pulumi.Input<string>;
  content: pulumi.Input<string>;
  mode?: pulumi.Input<string>;
}

export class HostFile extends HostResource {
  declare readonly path: pulumi.Output<string>;
  declare readonly content: pulumi.Output<string>;

  constructor(name: string, args: HostFileArgs, opts?: pulumi.CustomResourceOptions) {
    super("HostFile", name, args, opts);
  }
}
