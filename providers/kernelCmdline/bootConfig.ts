// The boot backends KernelCmdline can edit, one entry each: the source files that carry the
// kernel's arguments, how a plan edits and a revert takes back only this stack's arguments, the
// tool that regenerates what the loader reads (if any), and the check that what it reads has them.
import type { TrialLoader } from "../bootTrial/plan";
import { missingKernelArgs } from "../kernel/cmdline";
import type { RemoteHost } from "../ssh/host";
import { catFile, catFiles, fileFromSection, filesFromSection, readSections } from "../ssh/sections";
import type { ShellListOwnership } from "../text/shellVariable";
import type { TokenOwnership } from "../text/tokenList";
import { BootedLoader, BOOTED_LOADER_SNIPPET, detectBootedLoader, parseBootedLoaderFacts, ProxmoxBootToolStatus } from "./bootedLoader";
import { EXTLINUX_CONF_PATH, ExtlinuxOwnership, extlinuxCfgHasArgs, planUpdateExtlinuxConf, revertUpdateExtlinuxConf, UPDATE_EXTLINUX_CONF_PATH } from "./extlinux";
import { ConfigFile, GRUB_CFG_PATH, GRUB_DEFAULTS_PATH, grubCfgHasArgs, grubCmdlineLinuxHasArgs, planGrubDefaults, revertGrubDefaults } from "./grub";
import { KERNEL_CMDLINE_PATH, kernelCmdlineSeed, planKernelCmdlineFile, proxmoxBootToolRefresh, revertKernelCmdlineFile } from "./kernelCmdlineFile";
import { LOADER_ENTRIES_SNIPPET, loaderEntryHasArgs, LoaderEntryOwnership, parseLoaderEntries, planLoaderEntry, revertLoaderEntry } from "./loaderEntries";
import { planSyslinuxConfig, revertSyslinuxConfig, SYSLINUX_CONFIG_PATHS, syslinuxConfigHasArgs, SyslinuxOwnership } from "./syslinux";

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
  /** /etc/kernel/cmdline, which kernel-install writes into new loader entries. */
  readonly kernelCmdline?: string;
  /** The running kernel's command line: kernel-install's fallback without /etc/kernel/cmdline. */
  readonly procCmdline?: string;
  /** /etc/machine-id: kernel-install names this installation's entries by it. */
  readonly machineId?: string;
  /** Boot Loader Specification entries on the ESP or XBOOTLDR partition. */
  readonly loaderEntries?: readonly ConfigFile[];
  /** Syslinux/extlinux configs written by hand (SYSLINUX_CONFIG_PATHS that exist). */
  readonly syslinux?: readonly ConfigFile[];
  /** The loader that booted the host, as far as its traces tell (EFI variables, proxmox-boot-tool status...). */
  readonly booted?: BootedLoader;
  /** proxmox-boot-tool's status, when it is installed. */
  readonly proxmoxBootTool?: ProxmoxBootToolStatus;
}

const BOOT_SNIPPETS = {
  defaults: catFile(GRUB_DEFAULTS_PATH),
  extlinuxDefaults: catFile(UPDATE_EXTLINUX_CONF_PATH),
  grubCfg: catFile(GRUB_CFG_PATH),
  extlinuxCfg: catFile(EXTLINUX_CONF_PATH),
  dropIns: catFiles("/etc/default/grub.d/*.cfg"),
  kernelCmdline: catFile(KERNEL_CMDLINE_PATH),
  procCmdline: "cat /proc/cmdline",
  machineId: "cat /etc/machine-id",
  loaderEntries: LOADER_ENTRIES_SNIPPET,
  syslinux: catFiles(SYSLINUX_CONFIG_PATHS.join(" ")),
  booted: BOOTED_LOADER_SNIPPET,
};

/** Every backend's files, in one round trip. */
export async function readBootFiles(host: RemoteHost): Promise<BootFiles> {
  const s = await readSections(host, BOOT_SNIPPETS);
  const booted = parseBootedLoaderFacts(s.booted);
  return {
    defaults: fileFromSection(s.defaults),
    extlinuxDefaults: fileFromSection(s.extlinuxDefaults),
    grubCfg: fileFromSection(s.grubCfg),
    extlinuxCfg: fileFromSection(s.extlinuxCfg),
    dropIns: filesFromSection(s.dropIns),
    kernelCmdline: fileFromSection(s.kernelCmdline),
    procCmdline: s.procCmdline,
    machineId: s.machineId.trim() || undefined,
    loaderEntries: parseLoaderEntries(s.loaderEntries),
    syslinux: filesFromSection(s.syslinux),
    booted: detectBootedLoader(booted),
    proxmoxBootTool: booted.proxmoxBootTool,
  };
}

/** One source file as a plan leaves it. */
export interface SourceEdit {
  readonly path: string;
  readonly before: string | undefined;
  readonly after: string;
  /** A revert's `after` is the text the file was created with: if vfio-host's backup says it did not exist, remove it instead. */
  readonly createdWith?: boolean;
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
  /** The files a plan may edit on this host, whose backups identify a dead run's edits. */
  sources(files: BootFiles): string[];
  /** The files a revert of `owned` edits. */
  revertSources(owned: unknown): string[];
  /** Whether the host has this backend's source files. */
  present(files: BootFiles): boolean;
  /** Why an explicitly chosen backend cannot be used on a host without its files, and the fix. */
  readonly absentMessage: string;
  plan(request: BackendRequest, files: BootFiles): BackendPlan<unknown>;
  /** The source files with this stack's arguments taken off, from their current text. */
  revert(current: (path: string) => string | undefined, owned: unknown): SourceEdit[];
  /** The tool that writes what the loader reads from the sources; absent when the loader reads the sources. */
  readonly regenerate?: { readonly argv: readonly string[]; readonly name: string };
  /** What the loader reads, for messages. */
  readonly generated: string;
  /** Whether what the loader reads carries the args (and, for extlinux, the modules). */
  verify(files: BootFiles, args: readonly string[], modules: readonly string[]): BootConfigCheck;
  /** The loader whose one-shot the stack's trial boot uses, when its files can be staged for one. */
  readonly trial?: TrialLoader;
}

const inFile = (path: string, changes: readonly string[]) => changes.map((c) => `${path}: ${c}`);
const checkAll = (checks: BootConfigCheck[]): BootConfigCheck => {
  const problems = checks.flatMap((c) => c.problems);
  return { ok: problems.length === 0, problems };
};

function fileHasArgs(path: string, text: string | undefined, args: readonly string[], consequence: string): BootConfigCheck {
  const missing = missingKernelArgs(text ?? "", args);
  return missing.length === 0 ? { ok: true, problems: [] } : { ok: false, problems: [`${path} lacks ${missing.join(" ")}: ${consequence} them`] };
}

/** What the planner of one source file is given: the request, the file's text (or where it starts) and its backup. */
interface SourceFileRequest<Owned> {
  readonly text: string;
  readonly ensure: readonly string[];
  readonly remove: readonly string[];
  readonly modules: readonly string[];
  readonly previouslyOwned?: Owned;
  readonly backup?: string;
}

/**
 * The plan and revert of a backend whose arguments live in one source file (GRUB's defaults,
 * Alpine's update-extlinux.conf, proxmox-boot-tool's /etc/kernel/cmdline): planned from its text,
 * or from `start` when it does not exist yet, and reverted by taking this stack's arguments off.
 */
function oneSourceFile<Owned>(
  path: string,
  read: (files: BootFiles) => string | undefined,
  planFile: (request: SourceFileRequest<Owned>, files: BootFiles) => { text: string; owned: Owned; changes: readonly string[]; warnings?: readonly string[] },
  revertFile: (text: string, owned: Owned) => string,
  start: (files: BootFiles) => string = () => "",
): Pick<CmdlineBackend, "sources" | "revertSources" | "plan" | "revert"> {
  return {
    sources: () => [path],
    revertSources: () => [path],
    plan(request, files) {
      const before = read(files);
      const plan = planFile(
        { ...request, text: before ?? start(files), previouslyOwned: request.previouslyOwned as Owned | undefined, backup: request.backups?.[path] },
        files,
      );
      return { edits: [{ path, before, after: plan.text }], owned: plan.owned, changes: inFile(path, plan.changes), warnings: plan.warnings ?? [] };
    },
    revert(current, owned) {
      const text = current(path);
      return text === undefined ? [] : [{ path, before: text, after: revertFile(text, owned as Owned) }];
    },
  };
}

/** What the planner of one of several files of a kind (loader entries, syslinux configs) is given. */
interface EachFileRequest<Owned> extends Omit<SourceFileRequest<Owned>, "modules"> {
  readonly path: string;
}

/** A plan over several files of one kind, each planned on its own and owned by path. */
function planEachFile<Owned>(
  request: BackendRequest,
  configs: readonly ConfigFile[],
  previous: Readonly<Record<string, Owned>> | undefined,
  planFile: (request: EachFileRequest<Owned>) => { text: string; owned: Owned; changes: readonly string[] },
): { edits: SourceEdit[]; owned: Record<string, Owned>; changes: string[] } {
  const planned = configs.map((file) => ({
    file,
    plan: planFile({ ensure: request.ensure, remove: request.remove, text: file.text, path: file.path, previouslyOwned: previous?.[file.path], backup: request.backups?.[file.path] }),
  }));
  return {
    edits: planned.map(({ file, plan }) => ({ path: file.path, before: file.text, after: plan.text })),
    owned: Object.fromEntries(planned.map(({ file, plan }) => [file.path, plan.owned])),
    changes: planned.flatMap(({ file, plan }) => inFile(file.path, plan.changes)),
  };
}

/** planEachFile's revert: each file that is still there, with this stack's arguments taken off. */
function revertEachFile<Owned>(current: (path: string) => string | undefined, owned: Readonly<Record<string, Owned>>, revertFile: (text: string, owned: Owned) => string): SourceEdit[] {
  return Object.entries(owned).flatMap(([path, mine]) => {
    const text = current(path);
    return text === undefined ? [] : [{ path, before: text, after: revertFile(text, mine) }];
  });
}

/** What systemd-boot's backend changed: /etc/kernel/cmdline for kernels installed later, and each entry. */
interface LoaderEntriesOwnership {
  readonly cmdline: TokenOwnership;
  /** The text /etc/kernel/cmdline was created with, when it did not exist (kernelCmdlineSeed). */
  readonly seed?: string;
  readonly entries: Readonly<Record<string, LoaderEntryOwnership>>;
}

/**
 * This installation's loader entries: kernel-install writes `machine-id` into each, and an ESP
 * shared with another Linux holds that one's entries too, which are not ours to edit. A trial
 * boot's own entry (vfio-host-trial-*.conf, left by a run cut short) is not one: it is removed,
 * never edited or made permanent.
 */
export function ownEntries(files: Pick<BootFiles, "loaderEntries" | "machineId">): readonly ConfigFile[] {
  return (files.loaderEntries ?? []).filter((entry) => {
    if (/\/vfio-host-trial-[^/]*\.conf$/.test(entry.path)) return false;
    const id = /^machine-id[ \t]+(\S+)/m.exec(entry.text)?.[1];
    return id === undefined || files.machineId === undefined || id === files.machineId;
  });
}

/** GRUB's blscfg reads the entries on /boot (Fedora/RHEL keep them there, not on the ESP). */
const BLS_ENTRIES_DIR = "/boot/loader/entries/";
const blsEntries = (files: BootFiles) => ownEntries(files).filter((entry) => entry.path.startsWith(BLS_ENTRIES_DIR));

/** What the grubby backend changed: GRUB_CMDLINE_LINUX, /etc/kernel/cmdline when the host has one, and each entry. */
interface BlsEntriesOwnership {
  readonly defaults: ShellListOwnership;
  readonly cmdline?: TokenOwnership;
  readonly entries: Readonly<Record<string, LoaderEntryOwnership>>;
}

/** Each hand-written syslinux config's own ownership, by path. */
type SyslinuxFilesOwnership = Readonly<Record<string, SyslinuxOwnership>>;

export const BACKEND_NAMES = ["grub", "extlinux", "systemd-boot", "proxmox-boot-tool", "grubby", "syslinux"] as const;
export type Backend = (typeof BACKEND_NAMES)[number];

export const backends: Record<Backend, CmdlineBackend> = {
  grub: {
    label: `GRUB (${GRUB_DEFAULTS_PATH}, update-grub)`,
    ...oneSourceFile<ShellListOwnership>(
      GRUB_DEFAULTS_PATH,
      (files) => files.defaults,
      (request, files) => planGrubDefaults({ ...request, dropIns: files.dropIns }),
      revertGrubDefaults,
    ),
    present: (files) => files.defaults !== undefined,
    absentMessage: `backend: "grub" but the host has no ${GRUB_DEFAULTS_PATH}; install grub (Debian: grub-pc or grub-efi-amd64), or use backend: "auto"`,
    // update-grub is Debian's wrapper; elsewhere grub-mkconfig writes the same file.
    regenerate: { argv: ["sh", "-c", `if command -v update-grub >/dev/null; then update-grub; else grub-mkconfig -o ${GRUB_CFG_PATH}; fi`], name: "update-grub" },
    generated: GRUB_CFG_PATH,
    verify: (files, args) => grubCfgHasArgs(files.grubCfg ?? "", args),
    trial: "grub",
  },
  extlinux: {
    label: `Alpine's extlinux (${UPDATE_EXTLINUX_CONF_PATH}, update-extlinux)`,
    ...oneSourceFile<ExtlinuxOwnership>(UPDATE_EXTLINUX_CONF_PATH, (files) => files.extlinuxDefaults, planUpdateExtlinuxConf, revertUpdateExtlinuxConf),
    present: (files) => files.extlinuxDefaults !== undefined,
    absentMessage: `backend: "extlinux" but the host has no ${UPDATE_EXTLINUX_CONF_PATH}; install syslinux (Alpine: apk add syslinux), or use backend: "auto"`,
    regenerate: { argv: ["update-extlinux"], name: "update-extlinux" },
    generated: EXTLINUX_CONF_PATH,
    verify: (files, args, modules) => extlinuxCfgHasArgs(files.extlinuxCfg ?? "", args, modules),
  },
  // systemd-boot reads the entries themselves, so they are edited in place (as grubby does on
  // Fedora) and no kernel-install run (which would rebuild the initramfs too) is needed;
  // /etc/kernel/cmdline carries the args into the entries of kernels installed later.
  "systemd-boot": {
    label: `systemd-boot (${KERNEL_CMDLINE_PATH} and the loader entries kernel-install wrote)`,
    sources: (files) => [KERNEL_CMDLINE_PATH, ...ownEntries(files).map((e) => e.path)],
    revertSources: (owned) => [KERNEL_CMDLINE_PATH, ...Object.keys((owned as LoaderEntriesOwnership).entries)],
    present: (files) => ownEntries(files).length > 0,
    absentMessage:
      'backend: "systemd-boot" but the host has no Boot Loader Specification entries of its own (loader/entries/*.conf on the ESP ' +
      'at /boot/efi, /efi or /boot); install systemd-boot (bootctl install, then kernel-install add for the kernel), or use backend: "auto"',
    plan(request, files) {
      const previous = request.previouslyOwned as LoaderEntriesOwnership | undefined;
      const edit = { ensure: request.ensure, remove: request.remove };
      // Without the file kernel-install uses /proc/cmdline; the file starts from that, so the next kernel keeps root= and the rest.
      const cmdline = planKernelCmdlineFile({
        ...edit,
        text: files.kernelCmdline ?? kernelCmdlineSeed(files.procCmdline ?? ""),
        previouslyOwned: previous?.cmdline,
        backup: request.backups?.[KERNEL_CMDLINE_PATH],
      });
      const entries = planEachFile(request, ownEntries(files), previous?.entries, planLoaderEntry);
      return {
        edits: [{ path: KERNEL_CMDLINE_PATH, before: files.kernelCmdline, after: cmdline.text }, ...entries.edits],
        owned: {
          cmdline: cmdline.owned,
          ...(files.kernelCmdline === undefined ? { seed: kernelCmdlineSeed(files.procCmdline ?? "") } : previous?.seed !== undefined ? { seed: previous.seed } : {}),
          entries: entries.owned,
        },
        changes: [...inFile(KERNEL_CMDLINE_PATH, cmdline.changes), ...entries.changes],
        warnings: [],
      };
    },
    revert(current, owned) {
      const { cmdline, seed, entries } = owned as LoaderEntriesOwnership;
      const edits: SourceEdit[] = [];
      const text = current(KERNEL_CMDLINE_PATH);
      if (text !== undefined) {
        const after = revertKernelCmdlineFile(text, cmdline);
        edits.push({ path: KERNEL_CMDLINE_PATH, before: text, after, createdWith: after === seed });
      }
      return [...edits, ...revertEachFile(current, entries, revertLoaderEntry)];
    },
    generated: "the loader entries (loader/entries/*.conf)",
    verify: (files, args) =>
      checkAll([
        ...ownEntries(files).map((e) => loaderEntryHasArgs(e.text, args, e.path)),
        ...(ownEntries(files).length === 0 ? [{ ok: false, problems: ["no loader entry of this installation is left"] }] : []),
        fileHasArgs(KERNEL_CMDLINE_PATH, files.kernelCmdline, args, "kernels installed later would boot without"),
      ]),
    trial: "systemd-boot",
  },
  // Proxmox VE on ZFS/UEFI (and wherever proxmox-boot-tool keeps the ESPs): its refresh copies the
  // kernels to every ESP it manages and writes their entries' options from /etc/kernel/cmdline. The
  // ESPs stay unmounted between refreshes, so the check reads the file the refresh took them from.
  "proxmox-boot-tool": {
    label: `proxmox-boot-tool (${KERNEL_CMDLINE_PATH}, proxmox-boot-tool refresh)`,
    // proxmox-boot-tool refuses a file without root=; without one, the running line is where it starts, as on its installer's hosts.
    ...oneSourceFile<TokenOwnership>(
      KERNEL_CMDLINE_PATH,
      (files) => files.kernelCmdline,
      planKernelCmdlineFile,
      revertKernelCmdlineFile,
      (files) => kernelCmdlineSeed(files.procCmdline ?? ""),
    ),
    present: (files) => files.proxmoxBootTool?.configured === true,
    absentMessage:
      'backend: "proxmox-boot-tool" but proxmox-boot-tool manages no ESP on this host (no /etc/kernel/proxmox-boot-uuids; `proxmox-boot-tool status` says so); ' +
      'on a Proxmox host that boots GRUB from its disk use backend: "grub", or use backend: "auto"',
    regenerate: { argv: [...proxmoxBootToolRefresh], name: "proxmox-boot-tool refresh" },
    generated: `the loader entries on the ESPs proxmox-boot-tool manages (from ${KERNEL_CMDLINE_PATH})`,
    verify: (files, args) => fileHasArgs(KERNEL_CMDLINE_PATH, files.kernelCmdline, args, "proxmox-boot-tool refresh would write entries without"),
  },
  // Fedora/RHEL 9: GRUB's blscfg reads the BLS entries at boot, so they are edited in place, as
  // `grubby --update-kernel=ALL --args` edits them (here with verified writes, backups and a revert
  // to the original bytes). GRUB_CMDLINE_LINUX too: grub2-mkconfig rewrites every entry's options
  // from it, and /etc/kernel/cmdline where the host has one, which kernel-install gives new kernels.
  grubby: {
    label: `GRUB reading BLS entries (GRUB_CMDLINE_LINUX in ${GRUB_DEFAULTS_PATH} and ${BLS_ENTRIES_DIR}*.conf, as grubby edits them)`,
    sources: (files) => [GRUB_DEFAULTS_PATH, ...(files.kernelCmdline === undefined ? [] : [KERNEL_CMDLINE_PATH]), ...blsEntries(files).map((e) => e.path)],
    revertSources: (owned) => {
      const { cmdline, entries } = owned as BlsEntriesOwnership;
      return [GRUB_DEFAULTS_PATH, ...(cmdline ? [KERNEL_CMDLINE_PATH] : []), ...Object.keys(entries)];
    },
    present: (files) => files.defaults !== undefined && blsEntries(files).length > 0,
    absentMessage:
      `backend: "grubby" but the host lacks ${GRUB_DEFAULTS_PATH} or BLS entries in ${BLS_ENTRIES_DIR}; it is for GRUB with ` +
      'GRUB_ENABLE_BLSCFG=true (Fedora, RHEL 9 and their rebuilds); use backend: "auto"',
    plan(request, files) {
      const previous = request.previouslyOwned as BlsEntriesOwnership | undefined;
      const edit = { ensure: request.ensure, remove: request.remove };
      const defaults = planGrubDefaults(
        { ...edit, text: files.defaults ?? "", previouslyOwned: previous?.defaults, backup: request.backups?.[GRUB_DEFAULTS_PATH], dropIns: files.dropIns },
        "GRUB_CMDLINE_LINUX",
      );
      const cmdline =
        files.kernelCmdline === undefined
          ? undefined
          : planKernelCmdlineFile({ ...edit, text: files.kernelCmdline, previouslyOwned: previous?.cmdline, backup: request.backups?.[KERNEL_CMDLINE_PATH] });
      const entries = planEachFile(request, blsEntries(files), previous?.entries, planLoaderEntry);
      return {
        edits: [
          { path: GRUB_DEFAULTS_PATH, before: files.defaults, after: defaults.text },
          ...(cmdline ? [{ path: KERNEL_CMDLINE_PATH, before: files.kernelCmdline, after: cmdline.text }] : []),
          ...entries.edits,
        ],
        owned: { defaults: defaults.owned, ...(cmdline ? { cmdline: cmdline.owned } : {}), entries: entries.owned },
        changes: [...inFile(GRUB_DEFAULTS_PATH, defaults.changes), ...(cmdline ? inFile(KERNEL_CMDLINE_PATH, cmdline.changes) : []), ...entries.changes],
        warnings: defaults.warnings,
      };
    },
    revert(current, owned) {
      const { defaults, cmdline, entries } = owned as BlsEntriesOwnership;
      const edits: SourceEdit[] = [];
      const grub = current(GRUB_DEFAULTS_PATH);
      if (grub !== undefined) edits.push({ path: GRUB_DEFAULTS_PATH, before: grub, after: revertGrubDefaults(grub, defaults, "GRUB_CMDLINE_LINUX") });
      const text = current(KERNEL_CMDLINE_PATH);
      if (cmdline !== undefined && text !== undefined) edits.push({ path: KERNEL_CMDLINE_PATH, before: text, after: revertKernelCmdlineFile(text, cmdline) });
      return [...edits, ...revertEachFile(current, entries, revertLoaderEntry)];
    },
    generated: `the BLS entries in ${BLS_ENTRIES_DIR}`,
    verify: (files, args) =>
      checkAll([
        ...blsEntries(files).map((e) => loaderEntryHasArgs(e.text, args, e.path)),
        ...(blsEntries(files).length === 0 ? [{ ok: false, problems: [`no BLS entry of this installation is left in ${BLS_ENTRIES_DIR}`] }] : []),
        grubCmdlineLinuxHasArgs(files.defaults ?? "", args),
        ...(files.kernelCmdline === undefined ? [] : [fileHasArgs(KERNEL_CMDLINE_PATH, files.kernelCmdline, args, "kernels installed later would boot without")]),
      ]),
  },
  // Debian's extlinux and Unraid's syslinux read configs nobody generates: APPEND is edited in place.
  syslinux: {
    label: `syslinux/extlinux (APPEND in ${SYSLINUX_CONFIG_PATHS.join(" or ")})`,
    sources: (files) => (files.syslinux ?? []).map((f) => f.path),
    revertSources: (owned) => Object.keys(owned as SyslinuxFilesOwnership),
    present: (files) => (files.syslinux ?? []).length > 0,
    absentMessage: `backend: "syslinux" but the host has none of ${SYSLINUX_CONFIG_PATHS.join(", ")}; install extlinux or syslinux, or use backend: "auto"`,
    plan: (request, files) => ({
      ...planEachFile(request, files.syslinux ?? [], request.previouslyOwned as SyslinuxFilesOwnership | undefined, planSyslinuxConfig),
      warnings: [],
    }),
    revert: (current, owned) => revertEachFile(current, owned as SyslinuxFilesOwnership, revertSyslinuxConfig),
    generated: SYSLINUX_CONFIG_PATHS.join(" or "),
    verify: (files, args) => checkAll((files.syslinux ?? []).map((f) => syslinuxConfigHasArgs(f.text, args, f.path))),
  },
};

const REGENERATE_TIMEOUT_MS = 10 * 60_000;

/** Runs the backend's update tool, which writes the generated config from the source files. */
export async function regenerate(host: RemoteHost, backend: Backend): Promise<void> {
  const tool = backends[backend].regenerate;
  if (tool) await host.run(tool.argv, { timeoutMs: REGENERATE_TIMEOUT_MS });
}

/** Regenerates the boot config from the source files and checks what the loader reads; the failure, described, or undefined. */
export async function regenerateAndVerify(host: RemoteHost, backend: Backend, check: (files: BootFiles) => BootConfigCheck): Promise<string | undefined> {
  const b = backends[backend];
  const tool = b.regenerate?.name ?? "the edit";
  try {
    await regenerate(host, backend);
  } catch (err) {
    return `${tool} failed: ${(err as Error).message}`;
  }
  const verdict = check(await readBootFiles(host));
  return verdict.ok ? undefined : `${b.generated} lacks the arguments after ${tool}: ${verdict.problems.join("; ")}`;
}
