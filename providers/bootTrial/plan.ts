// Trial boots, the pure half: whether a host can boot a change once before it becomes permanent,
// the trial's id and kernel arguments, and its boot entry.
// - GRUB: 00_header boots `next_entry` once and clears it (it needs no GRUB_DEFAULT=saved),
//   41_custom sources /boot/grub/custom.cfg at boot (so the entry needs no update-grub), and the
//   default entry stays what it was until the commit runs update-grub.
// - systemd-boot: it reads and removes the EFI variable LoaderEntryOneShot before it boots the
//   entry named there (bootctl set-oneshot), so a trial that fails boots the default next time; the
//   trial's entry has no sort-key, and entries with one sort first, so it never becomes the default.
import { createHash } from "crypto";
import { z } from "zod";
import { parseKernelArgs } from "../kernel/cmdline";
import { BootLoader, LOADER_NAMES } from "../kernelCmdline/bootedLoader";

export const GRUBENV_PATH = "/boot/grub/grubenv";
export const CUSTOM_CFG_PATH = "/boot/grub/custom.cfg";
/** The trial's initramfs lives beside the live ones, in a directory no initrd.img-* glob reaches. */
export const TRIAL_IMAGE_DIR = "/boot/vfio-host-trial";
/** What a trial keeps on the host while it runs: its staged files, its record, the generated grub.cfg. */
export const TRIAL_WORK_DIR = "/var/lib/vfio-host/trial";
/** On the trial's command line: the kernel ignores it, /proc/cmdline shows that the trial entry booted. */
export const TRIAL_MARKER_KEY = "vfio_host.trial";

/** The loaders whose one-shot a trial uses. */
export type TrialLoader = "grub" | "systemd-boot";

/** Files a trial stages: the loaders' sources, the initramfs inputs, the loader entries on an ESP. */
const STAGED_PATH =
  /^(\/etc\/(default\/grub|kernel\/cmdline|initramfs-tools\/modules|(modprobe|dracut\.conf)\.d\/[A-Za-z0-9_.-]+\.conf)|(\/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*\/loader\/entries\/[A-Za-z0-9_+@-][A-Za-z0-9_.+@-]*\.conf)$/;
/** Staged files that go into the initramfs: a trial that changes one boots an image of its own. */
const IMAGE_INPUT = /^\/etc\/(initramfs-tools\/modules|(modprobe|dracut\.conf)\.d\/)/;
export const isImageInput = (path: string) => IMAGE_INPUT.test(path);

/** A boot file a resource wants changed, written only when the trial boot of it passed. */
export const StagedFileSchema = z.strictObject({
  path: z.string().regex(STAGED_PATH, "not a boot file a trial stages"),
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

/** Pure: why this GRUB host cannot boot a change once first, or undefined when it can. */
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

/** Whether a host boots changes once first, and with which loader's one-shot; or why not. */
export type TrialSupport = { loader: TrialLoader; unsupported?: undefined } | { loader?: undefined; unsupported: string };

const ONE_SHOT: Record<TrialLoader, string> = { grub: "GRUB's next_entry", "systemd-boot": "systemd-boot's LoaderEntryOneShot" };

/** The line every staged resource adds to its planned changes, so preview says what the reboot will do. */
export function trialPlanLine(support: TrialSupport): string {
  return support.loader !== undefined
    ? `boot once with these changes (${ONE_SHOT[support.loader]}), then make them permanent once that boot is verified`
    : `no trial boot on this host (${support.unsupported}): these changes become permanent before the reboot`;
}

export interface SdbootTrialFacts {
  /** The loader that booted the host (detectBootedLoader). */
  booted: BootLoader;
  /** Commands found on PATH. */
  commands: string[];
  /** Whether /sys/firmware/efi/efivars lists variables (where bootctl set-oneshot writes). */
  efivars: boolean;
  /** This installation's loader entries (kernel-install's, with this machine's id). */
  entries: readonly { path: string; text: string }[];
}

/** Pure: why a host that booted systemd-boot cannot run trial boots, or undefined when it can. */
export function sdbootTrialUnsupported(facts: SdbootTrialFacts): string | undefined {
  if (!facts.efivars) return "the EFI variables are not readable at /sys/firmware/efi/efivars, so systemd-boot's one-shot cannot be set";
  const missing = ["bootctl", "dracut"].filter((c) => !facts.commands.includes(c));
  if (missing.length > 0) return `the host lacks ${missing.join(", ")} (trial boots on systemd-boot build their initramfs with dracut)`;
  if (facts.entries.length === 0) return "systemd-boot has no loader entry of this installation";
  // Entries with a sort-key sort before those without, and the first one is the default: an entry
  // of ours without one can never be it then. Without any, ours could sort first.
  if (!facts.entries.some((e) => /^[ \t]*sort-key[ \t]+\S/m.test(e.text))) {
    return "its loader entries carry no sort-key, so systemd-boot could pick a trial's entry as the default";
  }
  return undefined;
}

/** Pure: which trial a host runs; the booted loader decides (a Proxmox host keeps /etc/default/grub but boots systemd-boot). */
export function trialSupport(grub: TrialSupportFacts, sdboot: SdbootTrialFacts): TrialSupport {
  if (sdboot.booted === "systemd-boot") {
    const unsupported = sdbootTrialUnsupported(sdboot);
    return unsupported === undefined ? { loader: "systemd-boot" } : { unsupported };
  }
  // GRUB's files on a host another loader boots would take a trial entry that never boots.
  if (sdboot.booted !== "grub" && sdboot.booted !== "unknown") return { unsupported: `its loader is ${LOADER_NAMES[sdboot.booted]}; trial boots use GRUB's one-shot or systemd-boot's` };
  const unsupported = trialUnsupported(grub);
  return unsupported === undefined ? { loader: "grub" } : { unsupported };
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

/** The trial's loader entry's file name, which is also its id for `bootctl set-oneshot`. */
export const sdbootTrialEntryName = (id: string) => `vfio-host-trial-${id}.conf`;
/** The trial's initramfs on the ESP (the loader reads only its own partition), as the entry names it. */
export const sdbootTrialImage = (release: string) => `/vfio-host-trial/initrd-${release}`;

/**
 * Pure: the trial's loader entry, made from the entry the commit will leave for its kernel (the
 * staged one): another title, no sort-key (so it sorts after every entry that has one and is never
 * the default), the trial-only arguments on an options line of their own after the others (they
 * win, e.g. panic=) and, when a trial image was built, that image in place of the main initrd (the
 * last initrd line: microcode images come first).
 */
export function renderSdbootTrialEntry(entry: string, id: string, args: readonly string[], trialImage: string | undefined): string {
  const lines = entry.replace(/\n$/, "").split("\n");
  const key = (line: string) => /^[ \t]*([A-Za-z0-9_-]+)/.exec(line)?.[1];
  const lastOf = (name: string) => lines.map(key).lastIndexOf(name);
  if (lines.some((l) => key(l) === "options" && parseKernelArgs(l.replace(/^[ \t]*options/, "")).includes("--"))) {
    throw new Error("the loader entry passes arguments to init (`--` in options), which a trial's arguments would join; set vfio-host:trialBoot to false");
  }
  if (lastOf("linux") < 0) throw new Error("the loader entry has no linux line");
  const lastInitrd = lastOf("initrd");
  if (trialImage !== undefined && lastInitrd < 0) throw new Error("the loader entry has no initrd line to put the trial's initramfs in");
  const lastOptions = lastOf("options");
  const out: string[] = [`# vfio-host trial ${id}: booted once (bootctl set-oneshot); removed when the trial is committed or falls back`];
  lines.forEach((line, i) => {
    const name = key(line);
    // kernel-install's header comment would name it as the file's author.
    if (name === "sort-key" || /^[ \t]*#/.test(line)) return;
    if (name === "title") out.push(`title      vfio-host trial ${id} (boots once)`);
    else if (i === lastInitrd && trialImage !== undefined) out.push(`initrd     ${trialImage}`);
    else out.push(line);
    if (i === lastOptions) out.push(`options    ${args.join(" ")}`);
  });
  if (lastOptions < 0) out.push(`options    ${args.join(" ")}`);
  if (!lines.some((l) => key(l) === "title")) out.splice(1, 0, `title      vfio-host trial ${id} (boots once)`);
  return `${out.join("\n")}\n`;
}

/** Pure: whether `bootctl list` marks the entry with this id as the default (systemd-boot would boot it every time). */
export function bootctlListsAsDefault(list: string, id: string): boolean {
  return list
    .split(/\n[ \t]*\n/)
    .some((block) => new RegExp(`^[ \\t]*id: ${id.replace(/[.+]/g, "\\$&")}[ \\t]*$`, "m").test(block) && /^[ \t]*title: .*\(default\)/m.test(block));
}
