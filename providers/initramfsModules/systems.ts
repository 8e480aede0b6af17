// The initramfs builders InitramfsModules can configure, one entry each: the tool that marks the
// builder as installed, the files that put the VFIO modules into its image, how a plan edits them
// and a revert takes back only what this stack wrote, the rebuild, and how to list the image.
import type { TrialLoader } from "../bootTrial/plan";
import { Backup, backupText, restoreWholeFile, staleBackupRefusal } from "../hostFile";
import { VfioModule } from "../kernel/modules";
import { RemoteHost, sha256Hex } from "../ssh/host";
import { ShellListOwnership } from "../text/shellVariable";
import { TokenOwnership } from "../text/tokenList";
import { INITRAMFS_TOOLS_MODULES_PATH, planInitramfsToolsModules, revertInitramfsToolsModules } from "./initramfsTools";
import { DRACUT_BOOT_SECTION, DRACUT_CONF_PATH, DRACUT_LISTING, parseDracutBoot, renderDracutVfioConf } from "./dracut";
import {
  dropInUnreadReason,
  MKINITCPIO_BOOT_SECTION,
  MKINITCPIO_CONF_PATH,
  MKINITCPIO_DROP_IN_PATH,
  MKINITCPIO_LISTING,
  MKINITCPIO_REBUILD,
  mkinitcpioHooksProblem,
  parseMkinitcpioBoot,
  parseMkinitcpioVersion,
  planMkinitcpioModules,
  renderMkinitcpioDropIn,
  revertMkinitcpioModules,
} from "./mkinitcpio";
import { MKINITFS_CONF_PATH, planMkinitfsFeatures, renderVfioFeatureModules, revertMkinitfsFeatures, VFIO_FEATURE_MODULES_PATH } from "./mkinitfs";

export const SYSTEM_NAMES = ["initramfs-tools", "mkinitfs", "dracut", "mkinitcpio"] as const;
export type System = (typeof SYSTEM_NAMES)[number];

export interface FileChange {
  readonly path: string;
  readonly before: string | undefined;
  readonly after: string;
}

export interface SystemPlan {
  /** Every file of the system, changed or not. */
  readonly files: readonly FileChange[];
  readonly owned: unknown;
  readonly changes: readonly string[];
  /** The hash of a file this stack owns whole, kept in state for a revert that keeps hand edits. */
  readonly wholeFileSha256?: string;
  /** Planned without state: why creating the resource must not write (see staleBackupRefusal). */
  readonly refusal?: string;
}

export interface SystemRequest {
  readonly modules: readonly VfioModule[];
  /** The system's files as read (undefined: absent). */
  readonly files: Readonly<Record<string, string | undefined>>;
  readonly previouslyOwned?: unknown;
  /** Without state: the files as vfio-host saved them before its first edit. */
  readonly backups?: Readonly<Record<string, Backup>>;
  /** The system's bootSection output, for a plan that depends on more than its files (mkinitcpio's version and presets). */
  readonly boot?: string;
}

/** What a revert needs from state. */
export interface SystemRecord {
  readonly release: string;
  readonly owned: unknown;
  readonly wholeFileSha256?: string;
}

export interface InitramfsSystem {
  /** On PATH when the builder is installed. */
  readonly command: string;
  /** How to install it, for the error on a host without it. */
  readonly install: string;
  /** The files a plan reads and may write; their backups identify a dead run's edits. */
  readonly sources: readonly string[];
  plan(request: SystemRequest): SystemPlan;
  /** Takes this stack's lines back off the host (the rebuild follows separately). */
  revert(host: RemoteHost, record: SystemRecord, current: (path: string) => string | undefined, fallbackSha256: () => Promise<string>): Promise<void>;
  /** Shell code (with `$release` set) whose output `rebuild` reads: where the image is and which tools there are. */
  readonly bootSection?: string;
  /** The commands, in order, that rebuild the image of `release`, given bootSection's output. */
  rebuild(release: string, boot: string): string[][];
  /** Shell code listing the files of the image of `$release`. */
  readonly listing: string;
  /** The loader whose trial boots build this system's image beside the live one (mkinitramfs -d, dracut --confdir). */
  readonly trial?: TrialLoader;
}

const loadable = (modules: readonly VfioModule[]) => modules.filter((m) => !m.builtin);

/** A file this stack owns whole: its change, the hash state keeps, and, planned without state, why it must not be written. */
function wholeFile(path: string, content: string, { files, backups }: Pick<SystemRequest, "files" | "backups">) {
  const before = files[path];
  return {
    change: { path, before, after: content },
    created: before === undefined,
    sha256: sha256Hex(content),
    refusal: backups && staleBackupRefusal(path, content, before === undefined ? undefined : Buffer.from(before), backups[path]),
  };
}

/** Where mkinitcpio's modules went: its own drop-in, or the words this stack added to MODULES=() in mkinitcpio.conf. */
type MkinitcpioOwnership = { readonly mode: "drop-in" } | { readonly mode: "conf"; readonly tokens: TokenOwnership };

/**
 * The drop-in, owned whole, wherever mkinitcpio reads it; else MODULES=() in mkinitcpio.conf.
 * Words an earlier run put in mkinitcpio.conf come back out once the drop-in is read (mkinitcpio
 * upgraded, a preset fixed); a drop-in left from an earlier run while it is not read stays, and
 * the revert takes it back with the rest.
 */
function planMkinitcpio(request: SystemRequest): SystemPlan {
  const { modules, files, backups } = request;
  const boot = parseMkinitcpioBoot(request.boot ?? "");
  const hooks = mkinitcpioHooksProblem(boot.mkinitcpioConfig);
  if (hooks) throw new Error(hooks);
  const previous = request.previouslyOwned as MkinitcpioOwnership | undefined;
  const confText = files[MKINITCPIO_CONF_PATH];
  const unread = dropInUnreadReason(parseMkinitcpioVersion(boot.mkinitcpioVersion), boot.mkinitcpioPresets);
  if (unread === undefined) {
    const dropIn = wholeFile(MKINITCPIO_DROP_IN_PATH, renderMkinitcpioDropIn(modules), request);
    const tookBack = previous?.mode === "conf" && confText !== undefined ? revertMkinitcpioModules(confText, previous.tokens) : undefined;
    return {
      files: [dropIn.change, ...(tookBack !== undefined ? [{ path: MKINITCPIO_CONF_PATH, before: confText, after: tookBack }] : [])],
      owned: { mode: "drop-in" } satisfies MkinitcpioOwnership,
      changes: [
        ...(dropIn.change.before !== dropIn.change.after ? [`${MKINITCPIO_DROP_IN_PATH}: ${dropIn.created ? "create" : "rewrite"} with MODULES+=(${loadable(modules).map((m) => m.name).join(" ")})`] : []),
        ...(tookBack !== undefined && tookBack !== confText ? [`${MKINITCPIO_CONF_PATH}: MODULES: take back what vfio-host added, now in ${MKINITCPIO_DROP_IN_PATH}`] : []),
      ],
      wholeFileSha256: dropIn.sha256,
      refusal: dropIn.refusal,
    };
  }
  if (confText === undefined) throw new Error(`${MKINITCPIO_CONF_PATH} is missing; reinstall mkinitcpio`);
  const conf = planMkinitcpioModules({
    text: confText,
    modules: loadable(modules).map((m) => m.name),
    previouslyOwned: previous?.mode === "conf" ? previous.tokens : undefined,
    backup: backupText(backups?.[MKINITCPIO_CONF_PATH]),
  });
  const leftDropIn = files[MKINITCPIO_DROP_IN_PATH];
  return {
    files: [{ path: MKINITCPIO_CONF_PATH, before: confText, after: conf.text }],
    owned: { mode: "conf", tokens: conf.owned } satisfies MkinitcpioOwnership,
    changes: conf.changes.length > 0 ? [...conf.changes.map((c) => `${MKINITCPIO_CONF_PATH}: MODULES: ${c}`), `${MKINITCPIO_CONF_PATH}, not ${MKINITCPIO_DROP_IN_PATH}: ${unread}`] : [],
    wholeFileSha256: leftDropIn === undefined ? undefined : sha256Hex(leftDropIn),
  };
}

export const systems: Record<System, InitramfsSystem> = {
  "initramfs-tools": {
    command: "update-initramfs",
    install: "Debian: apt install initramfs-tools",
    sources: [INITRAMFS_TOOLS_MODULES_PATH],
    plan({ modules, files, previouslyOwned, backups }) {
      const before = files[INITRAMFS_TOOLS_MODULES_PATH];
      const plan = planInitramfsToolsModules({
        text: before ?? "",
        modules: loadable(modules).map((m) => m.name),
        previouslyOwned: previouslyOwned as TokenOwnership | undefined,
        backup: backupText(backups?.[INITRAMFS_TOOLS_MODULES_PATH]),
      });
      return {
        files: [{ path: INITRAMFS_TOOLS_MODULES_PATH, before, after: plan.text }],
        owned: plan.owned,
        changes: plan.changes.map((c) => `${INITRAMFS_TOOLS_MODULES_PATH}: ${c}`),
      };
    },
    async revert(host, record, current) {
      const text = current(INITRAMFS_TOOLS_MODULES_PATH);
      if (text !== undefined) await host.revertFile(INITRAMFS_TOOLS_MODULES_PATH, revertInitramfsToolsModules(text, record.owned as TokenOwnership));
    },
    rebuild: (release) => [["update-initramfs", "-u", "-k", release]],
    listing: `lsinitramfs "/boot/initrd.img-$release"`,
    trial: "grub",
  },
  mkinitfs: {
    command: "mkinitfs",
    install: "Alpine: apk add mkinitfs",
    sources: [MKINITFS_CONF_PATH, VFIO_FEATURE_MODULES_PATH],
    plan(request) {
      const { modules, files, previouslyOwned, backups } = request;
      const confText = files[MKINITFS_CONF_PATH];
      if (confText === undefined) throw new Error(`${MKINITFS_CONF_PATH} is missing; reinstall mkinitfs`);
      const conf = planMkinitfsFeatures({ text: confText, previouslyOwned: previouslyOwned as ShellListOwnership | undefined, backup: backupText(backups?.[MKINITFS_CONF_PATH]) });
      const feature = wholeFile(VFIO_FEATURE_MODULES_PATH, renderVfioFeatureModules(modules), request);
      return {
        files: [feature.change, { path: MKINITFS_CONF_PATH, before: confText, after: conf.text }],
        owned: conf.owned,
        changes: [
          ...(feature.change.before !== feature.change.after ? [`${VFIO_FEATURE_MODULES_PATH}: ${feature.created ? "create" : "rewrite"} with ${loadable(modules).map((m) => m.fileName).join(", ")}`] : []),
          ...conf.changes.map((c) => `${MKINITFS_CONF_PATH}: features: ${c}`),
        ],
        wholeFileSha256: feature.sha256,
        refusal: feature.refusal,
      };
    },
    async revert(host, record, current, fallbackSha256) {
      const conf = current(MKINITFS_CONF_PATH);
      if (conf !== undefined) await host.revertFile(MKINITFS_CONF_PATH, revertMkinitfsFeatures(conf, record.owned as ShellListOwnership));
      await restoreWholeFile(host, VFIO_FEATURE_MODULES_PATH, record.wholeFileSha256 ?? (await fallbackSha256()), `mkinitfs ${record.release}`);
    },
    rebuild: (release) => [["mkinitfs", release]],
    // Alpine keeps one image per flavour; list what is in it now.
    listing: `f=/boot/initramfs-\${release##*-}; [ -e "$f" ] || f=$(ls /boot/initramfs-* | head -n 1); zcat "$f" | cpio -t`,
  },
  dracut: {
    command: "dracut",
    install: "Debian: apt install dracut; Fedora: dnf install dracut",
    sources: [DRACUT_CONF_PATH],
    plan(request) {
      const dropIn = wholeFile(DRACUT_CONF_PATH, renderDracutVfioConf(request.modules), request);
      return {
        files: [dropIn.change],
        owned: {},
        changes: dropIn.change.before !== dropIn.change.after ? [`${DRACUT_CONF_PATH}: ${dropIn.created ? "create" : "rewrite"} with force_drivers ${loadable(request.modules).map((m) => m.name).join(" ")} and /etc/modprobe.d`] : [],
        wholeFileSha256: dropIn.sha256,
        refusal: dropIn.refusal,
      };
    },
    async revert(host, record, _current, fallbackSha256) {
      await restoreWholeFile(host, DRACUT_CONF_PATH, record.wholeFileSha256 ?? (await fallbackSha256()), `dracut --force --kver ${record.release}`);
    },
    bootSection: DRACUT_BOOT_SECTION,
    rebuild: (release, boot) => parseDracutBoot(boot, release).rebuild.map((argv) => [...argv]),
    listing: DRACUT_LISTING,
    trial: "systemd-boot",
  },
  mkinitcpio: {
    command: "mkinitcpio",
    install: "Arch: pacman -S mkinitcpio",
    sources: [MKINITCPIO_CONF_PATH, MKINITCPIO_DROP_IN_PATH],
    plan: planMkinitcpio,
    async revert(host, record, current) {
      const owned = record.owned as MkinitcpioOwnership;
      const conf = current(MKINITCPIO_CONF_PATH);
      if (owned.mode === "conf" && conf !== undefined) await host.revertFile(MKINITCPIO_CONF_PATH, revertMkinitcpioModules(conf, owned.tokens));
      if (record.wholeFileSha256 !== undefined) await restoreWholeFile(host, MKINITCPIO_DROP_IN_PATH, record.wholeFileSha256, MKINITCPIO_REBUILD.join(" "));
    },
    bootSection: MKINITCPIO_BOOT_SECTION,
    rebuild: () => [[...MKINITCPIO_REBUILD]],
    listing: MKINITCPIO_LISTING,
  },
};
