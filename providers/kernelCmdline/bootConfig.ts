// The boot backends KernelCmdline can edit, one entry each: the source files that carry the
// kernel's arguments, how a plan edits and a revert takes back only this stack's arguments, the
// tool that regenerates what the loader reads (if any), and the check that what it reads has them.
import type { RemoteHost } from "../ssh/host";
import { EXTLINUX_CONF_PATH, ExtlinuxOwnership, extlinuxCfgHasArgs, planUpdateExtlinuxConf, revertUpdateExtlinuxConf, UPDATE_EXTLINUX_CONF_PATH } from "./extlinux";
import { ConfigFile, GRUB_CFG_PATH, GRUB_DEFAULTS_PATH, grubCfgHasArgs, planGrubDefaults, revertGrubDefaults } from "./grub";
import type { ShellListOwnership } from "../text/shellVariable";

/** The result of checking what the loader reads (grub.cfg, extlinux.conf, loader entries) for the args. */
export interface BootConfigCheck {
  readonly ok: boolean;
  readonly problems: readonly string[];
}

/** The host's boot files, read in one round trip before planning (undefined: the file does not exist). */
export interface BootFiles {
  readonly defaults?: string;
  readonly extlinuxDefaults?: string;
  readonly grubCfg?: string;
  readonly extlinuxCfg?: string;
  /** /etc/default/grub.d/*.cfg */
  readonly dropIns: readonly ConfigFile[];
}

/** One source file as a plan leaves it. */
export interface SourceEdit {
  readonly path: string;
  readonly before: string | undefined;
  readonly after: string;
}

export interface BackendPlan<Owned> {
  readonly edits: readonly SourceEdit[];
  readonly owned: Owned;
  readonly changes: readonly string[];
  readonly warnings: readonly string[];
}

export interface BackendRequest {
  readonly ensure: readonly string[];
  readonly remove: readonly string[];
  readonly modules: readonly string[];
  /** What the last apply of this backend owned, from state. */
  readonly previouslyOwned?: unknown;
  /** Without state: each source file as vfio-host saved it before its first edit ("" when it did not exist). */
  readonly backups?: Readonly<Record<string, string | undefined>>;
}

export interface CmdlineBackend {
  /** For messages: what the loader reads and the tool that writes it, e.g. "GRUB (/etc/default/grub, update-grub)". */
  readonly label: string;
  /** The files a plan may edit and whose backups identify a dead run's edits. */
  readonly sources: readonly string[];
  /** Whether the host has this backend's source files. */
  present(files: BootFiles): boolean;
  /** Why an explicitly chosen backend cannot be used on a host without its files, and the fix. */
  readonly absentMessage: string;
  plan(request: BackendRequest, files: BootFiles): BackendPlan<unknown>;
  /** The source files with this stack's arguments taken off, from their current text. */
  revert(current: (path: string) => string | undefined, owned: unknown): SourceEdit[];
  /** The tool that writes what the loader reads from the sources; absent when the loader reads the sources. */
  readonly regenerate?: { readonly argv: readonly string[]; readonly name: string };
  /** What the loader reads, for messages and to read back after regenerating. */
  readonly generated: string;
  /** Whether `text` (the generated file as read) carries the args (and, for extlinux, the modules). */
  verify(text: string, args: readonly string[], modules: readonly string[]): BootConfigCheck;
  /** The generated file's text among the facts read before planning. */
  generatedText(files: BootFiles): string;
  /** The loader has a one-shot the stack's trial boot uses (GRUB's next_entry). */
  readonly trial: boolean;
}

const single = (path: string, before: string | undefined, after: string): SourceEdit[] => [{ path, before, after }];

export const BACKEND_NAMES = ["grub", "extlinux"] as const;
export type Backend = (typeof BACKEND_NAMES)[number];

export const backends: Record<Backend, CmdlineBackend> = {
  grub: {
    label: `GRUB (${GRUB_DEFAULTS_PATH}, update-grub)`,
    sources: [GRUB_DEFAULTS_PATH],
    present: (files) => files.defaults !== undefined,
    absentMessage: `backend: "grub" but the host has no ${GRUB_DEFAULTS_PATH}; install grub (Debian: grub-pc or grub-efi-amd64), or use backend: "auto"`,
    plan(request, files) {
      const before = files.defaults ?? "";
      const plan = planGrubDefaults({
        text: before,
        ensure: request.ensure,
        remove: request.remove,
        dropIns: files.dropIns,
        previouslyOwned: request.previouslyOwned as ShellListOwnership | undefined,
        backup: request.backups?.[GRUB_DEFAULTS_PATH],
      });
      return { edits: single(GRUB_DEFAULTS_PATH, before, plan.text), owned: plan.owned, changes: plan.changes, warnings: plan.warnings };
    },
    revert: (current, owned) => {
      const text = current(GRUB_DEFAULTS_PATH);
      return text === undefined ? [] : single(GRUB_DEFAULTS_PATH, text, revertGrubDefaults(text, owned as ShellListOwnership));
    },
    // update-grub is Debian's wrapper; elsewhere grub-mkconfig writes the same file.
    regenerate: { argv: ["sh", "-c", `if command -v update-grub >/dev/null; then update-grub; else grub-mkconfig -o ${GRUB_CFG_PATH}; fi`], name: "update-grub" },
    generated: GRUB_CFG_PATH,
    verify: (text, args) => grubCfgHasArgs(text, args),
    generatedText: (files) => files.grubCfg ?? "",
    trial: true,
  },
  extlinux: {
    label: `Alpine's extlinux (${UPDATE_EXTLINUX_CONF_PATH}, update-extlinux)`,
    sources: [UPDATE_EXTLINUX_CONF_PATH],
    present: (files) => files.extlinuxDefaults !== undefined,
    absentMessage: `backend: "extlinux" but the host has no ${UPDATE_EXTLINUX_CONF_PATH}; install syslinux (Alpine: apk add syslinux), or use backend: "auto"`,
    plan(request, files) {
      const before = files.extlinuxDefaults ?? "";
      const plan = planUpdateExtlinuxConf({
        text: before,
        ensure: request.ensure,
        remove: request.remove,
        modules: request.modules,
        previouslyOwned: request.previouslyOwned as ExtlinuxOwnership | undefined,
        backup: request.backups?.[UPDATE_EXTLINUX_CONF_PATH],
      });
      return { edits: single(UPDATE_EXTLINUX_CONF_PATH, before, plan.text), owned: plan.owned, changes: plan.changes, warnings: [] };
    },
    revert: (current, owned) => {
      const text = current(UPDATE_EXTLINUX_CONF_PATH);
      return text === undefined ? [] : single(UPDATE_EXTLINUX_CONF_PATH, text, revertUpdateExtlinuxConf(text, owned as ExtlinuxOwnership));
    },
    regenerate: { argv: ["update-extlinux"], name: "update-extlinux" },
    generated: EXTLINUX_CONF_PATH,
    verify: extlinuxCfgHasArgs,
    generatedText: (files) => files.extlinuxCfg ?? "",
    trial: false,
  },
};

const REGENERATE_TIMEOUT_MS = 10 * 60_000;

/** Runs the backend's update tool, which writes the generated config from the source files. */
export async function regenerate(host: RemoteHost, backend: Backend): Promise<void> {
  const tool = backends[backend].regenerate;
  if (tool) await host.run(tool.argv, { timeoutMs: REGENERATE_TIMEOUT_MS });
}

/** Regenerates the boot config from the source files and checks it; the failure, described, or undefined. */
export async function regenerateAndVerify(host: RemoteHost, backend: Backend, check: (generated: string) => BootConfigCheck): Promise<string | undefined> {
  const b = backends[backend];
  const tool = b.regenerate?.name ?? "the edit";
  try {
    await regenerate(host, backend);
  } catch (err) {
    return `${tool} failed: ${(err as Error).message}`;
  }
  const verdict = check((await host.readFile(b.generated))?.toString("utf8") ?? "");
  return verdict.ok ? undefined : `${b.generated} lacks the arguments after ${tool}: ${verdict.problems.join("; ")}`;
}
