// Trial boots on GRUB, the pure half: whether a host can boot a change once before it becomes
// permanent, the trial's id and kernel arguments, and its menu entry. GRUB's 00_header boots
// `next_entry` once and clears it (it needs no GRUB_DEFAULT=saved), 41_custom sources
// /boot/grub/custom.cfg at boot (so the entry needs no update-grub), and the default entry stays
// what it was until the commit runs update-grub.
import { createHash } from "crypto";
import { z } from "zod";
import { parseKernelArgs } from "../kernel/cmdline";

export const GRUBENV_PATH = "/boot/grub/grubenv";
export const CUSTOM_CFG_PATH = "/boot/grub/custom.cfg";
/** The trial's initramfs lives beside the live ones, in a directory no initrd.img-* glob reaches. */
export const TRIAL_IMAGE_DIR = "/boot/vfio-host-trial";
/** What a trial keeps on the host while it runs: its staged files, its record, the generated grub.cfg. */
export const TRIAL_WORK_DIR = "/var/lib/vfio-host/trial";
/** On the trial's command line: the kernel ignores it, /proc/cmdline shows that the trial entry booted. */
export const TRIAL_MARKER_KEY = "vfio_host.trial";

/** A boot file a resource wants changed, written only when the trial boot of it passed. */
export const StagedFileSchema = z.strictObject({
  path: z.string().regex(/^\/etc\/(default\/grub|initramfs-tools\/modules|modprobe\.d\/[A-Za-z0-9_.-]+\.conf)$/, "not a boot file a trial stages"),
  /** sha256 of the file when it was staged, null when it did not exist: the commit refuses a file changed since. */
  beforeSha256: z.string().regex(/^[0-9a-f]{64}$/).nullable(),
  after: z.string(),
});
export type StagedFile = z.output<typeof StagedFileSchema>;

export const TrialOptionsSchema = z.strictObject({
  /** Seconds a panicking trial waits before it reboots (into the previous configuration). */
  panicSeconds: z.number().int().min(1).max(300).default(10),
  /** softdog's margin: a trial not verified within it is reset; 0 turns the watchdog off. */
  watchdogSeconds: z.number().int().min(0).max(3600).default(300),
});
export type TrialOptions = z.output<typeof TrialOptionsSchema>;

export interface TrialSupportFacts {
  /** /boot/grub/grub.cfg, or undefined. */
  grubCfg?: string;
  hasDefaultGrub: boolean;
  /** Size of /boot/grub/grubenv in bytes, or undefined when it does not exist. */
  grubenvSize?: number;
  /** `grub-probe --target=fs /boot/grub` and `--target=abstraction`. */
  bootFs: string;
  bootAbstraction: string;
  /** Commands found on PATH. */
  commands: string[];
}

// GRUB cannot write its environment block on these (Ubuntu's 00_header lists the same), so the
// one-shot would never be cleared and a failing trial would boot again and again.
const UNWRITABLE_FS = ["btrfs", "zfs", "cpiofs", "newc", "odc", "romfs", "squash4", "tarfs"];
const UNWRITABLE_ABSTRACTIONS = ["lvm", "diskfilter", "cryptodisk"];
const NEEDED_COMMANDS = ["grub-editenv", "grub-mkconfig", "unshare", "mkinitramfs"];

/** Pure: why this host cannot boot a change once first, or undefined when it can. */
export function trialUnsupported(facts: TrialSupportFacts): string | undefined {
  if (!facts.hasDefaultGrub || facts.grubCfg === undefined) return "its boot loader is not GRUB with /etc/default/grub and /boot/grub/grub.cfg";
  if (!/if \[ "\$\{next_entry\}" \] ; then/.test(facts.grubCfg)) return "/boot/grub/grub.cfg has no next_entry (one-shot) block; run update-grub";
  if (!/source \$\{config_directory\}\/custom\.cfg|source \$prefix\/custom\.cfg/.test(facts.grubCfg)) {
    return "/boot/grub/grub.cfg does not read custom.cfg (/etc/grub.d/41_custom is missing or not executable)";
  }
  if (facts.grubenvSize !== 1024) return `${GRUBENV_PATH} ${facts.grubenvSize === undefined ? "is missing" : "is not a 1024-byte environment block"} (grub-editenv ${GRUBENV_PATH} create)`;
  if (UNWRITABLE_FS.includes(facts.bootFs.trim())) return `/boot/grub is on ${facts.bootFs.trim()}, where GRUB cannot clear its one-shot`;
  const abstraction = facts.bootAbstraction.split(/\s+/).find((a) => UNWRITABLE_ABSTRACTIONS.includes(a));
  if (abstraction) return `/boot/grub is on ${abstraction}, where GRUB cannot clear its one-shot`;
  const missing = NEEDED_COMMANDS.filter((c) => !facts.commands.includes(c));
  if (missing.length > 0) return `the host lacks ${missing.join(", ")}`;
  return undefined;
}

/** The line every staged resource adds to its planned changes, so preview says what the reboot will do. */
export function trialPlanLine(unsupported: string | undefined): string {
  return unsupported === undefined
    ? "boot once with these changes (GRUB one-shot), then make them permanent once that boot is verified"
    : `no trial boot on this host (${unsupported}): these changes become permanent before the reboot`;
}

/** Pure: the trial's id, from everything that goes into it; a failed trial is not retried with the same id. */
export function trialId(files: readonly StagedFile[], release: string, buildImage: boolean, options: TrialOptions): string {
  const canonical = JSON.stringify({
    files: [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map((f) => [f.path, f.after]),
    release,
    buildImage,
    options: [options.panicSeconds, options.watchdogSeconds],
  });
  return createHash("sha256").update(canonical).digest("hex").slice(0, 12);
}

/**
 * Pure: what only the trial's command line carries. softdog starts counting when systemd loads it
 * (modules-load=) and resets a trial that nobody verified in time; the watchdog core must not feed
 * it for us (handle_boot_enabled=0), and nowayout=0 lets the proof stop it.
 */
export function trialOnlyArgs(id: string, options: TrialOptions): string[] {
  const watchdog =
    options.watchdogSeconds > 0
      ? [
          "modules-load=softdog",
          `softdog.soft_margin=${options.watchdogSeconds}`,
          "softdog.soft_active_on_boot=1",
          "softdog.nowayout=0",
          "watchdog.handle_boot_enabled=0",
        ]
      : [];
  return [`${TRIAL_MARKER_KEY}=${id}`, `panic=${options.panicSeconds}`, ...watchdog];
}

/** Pure: the trial id a boot's /proc/cmdline carries, or undefined. */
export function bootedTrial(cmdline: string): string | undefined {
  const token = parseKernelArgs(cmdline).reverse().find((t) => t.startsWith(`${TRIAL_MARKER_KEY}=`));
  return token?.slice(TRIAL_MARKER_KEY.length + 1);
}

/** Pure: the first menuentry of a grub.cfg, the one GRUB_DEFAULT=0 boots, as its lines. */
export function firstMenuEntry(grubCfg: string): string[] {
  const lines = grubCfg.split("\n");
  const start = lines.findIndex((l) => /^menuentry\s/.test(l));
  if (start < 0) throw new Error("the generated grub.cfg has no top-level menuentry");
  const end = lines.findIndex((l, i) => i > start && l === "}");
  if (end < 0) throw new Error("the generated grub.cfg's first menuentry does not end");
  return lines.slice(start, end + 1);
}

const blockStart = (id: string) => `### BEGIN vfio-host trial ${id} (removed when the trial is committed or falls back) ###`;
const BLOCK_END = "### END vfio-host trial ###";

/**
 * Pure: the trial's menu entry, copied from the entry update-grub will generate from the staged
 * /etc/default/grub (so the trial boots exactly what the commit makes permanent), renamed, with
 * the trial-only arguments last (they win, e.g. panic=) and, when a trial image was built, its initrd.
 */
export function renderTrialEntry(entry: readonly string[], id: string, args: readonly string[], release: string, trialImage: boolean): string {
  const title = /^menuentry\s+'[^']*'(.*)\$menuentry_id_option '[^']*'\s*\{$/.exec(entry[0]);
  if (!title) throw new Error(`unexpected menuentry line in the generated grub.cfg: ${entry[0]}`);
  let linuxLines = 0;
  let initrdLines = 0;
  const body = entry.slice(1).map((line) => {
    if (/^\s*linux\s/.test(line)) {
      linuxLines++;
      // Before a `--`: what follows it goes to init, and the kernel would not read panic= there.
      const dashes = line.search(/\s--(\s|$)/);
      return dashes < 0 ? `${line} ${args.join(" ")}` : `${line.slice(0, dashes)} ${args.join(" ")}${line.slice(dashes)}`;
    }
    if (trialImage && /^\s*initrd\s/.test(line)) {
      initrdLines++;
      // The path is relative to the file system that holds /boot; the trial image sits beside the live one.
      return line.replace(new RegExp(`(\\S*/)initrd\\.img-${release.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?=\\s|$)`), `$1vfio-host-trial/initrd.img-${release}`);
    }
    return line;
  });
  if (linuxLines !== 1) throw new Error(`the generated grub.cfg's first menuentry has ${linuxLines} linux lines`);
  if (trialImage && (initrdLines !== 1 || !body.some((l) => l.includes(`vfio-host-trial/initrd.img-${release}`)))) {
    throw new Error(`the generated grub.cfg's first menuentry does not load /boot/initrd.img-${release}`);
  }
  return [
    blockStart(id),
    `menuentry 'vfio-host trial ${id} (boots once)'${title[1]}$menuentry_id_option 'vfio-host-trial-${id}' {`,
    ...body,
    BLOCK_END,
    "",
  ].join("\n");
}

/**
 * Pure: custom.cfg without any trial block, so a new trial never stacks on an old one. The cleanup
 * does not use it: it puts back the original saved beside the trial, byte for byte and with its mode.
 */
export function customCfgWithoutTrial(text: string): string {
  return text.replace(/### BEGIN vfio-host trial [0-9a-f]+ [^\n]*\n[\s\S]*?### END vfio-host trial ###\n/g, "");
}

/** Pure: custom.cfg with this trial's block appended (and no other). */
export function customCfgWithTrial(text: string | undefined, block: string): string {
  const rest = customCfgWithoutTrial(text ?? "");
  return rest === "" || rest.endsWith("\n") ? rest + block : `${rest}\n${block}`;
}
