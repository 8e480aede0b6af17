// Syslinux/extlinux configs as written by hand, edited in place: Debian's extlinux package has no
// generator (/boot/extlinux/extlinux.conf is the admin's), and Unraid boots from its flash drive
// with /boot/syslinux/syslinux.cfg (and EFI/boot/syslinux.cfg when UEFI boot is on). Alpine's
// /boot/extlinux.conf is update-extlinux's output instead: extlinux.ts edits its source.
// Syntax: syslinux.cfg(5) and doc/syslinux.txt — keywords are case-insensitive, each LABEL section
// runs to the next LABEL, and a LABEL's APPEND replaces the global APPEND.
import { kernelArgSyntax, missingKernelArgs } from "../kernel/cmdline";
import { planTokens, revertTokenText, TokenOwnership } from "../text/tokenList";
import type { BootConfigCheck } from "./bootConfig";

/**
 * Where syslinux-family loaders read their config on the hosts this project knows: extlinux
 * installed into /boot/extlinux (Debian); Unraid's flash drive (mounted at /boot) for BIOS boot,
 * and syslinux.efi's copy next to it in EFI/boot for UEFI boot (docs.unraid.net: "copy the updated
 * syslinux/syslinux.cfg over the existing EFI/boot/syslinux.cfg"); syslinux installed into /boot.
 * Every one that exists is a config some boot path reads.
 */
export const SYSLINUX_CONFIG_PATHS = ["/boot/extlinux/extlinux.conf", "/boot/syslinux/syslinux.cfg", "/boot/EFI/boot/syslinux.cfg", "/boot/syslinux.cfg"] as const;

/**
 * KERNEL picks the loader by the file's extension (syslinux.cfg(5), KERNEL): these are not Linux.
 * COM32 modules (.c32: menus, chain.c32, hdt) and boot sectors take no kernel command line.
 */
const NOT_LINUX_EXTENSIONS = [".c32", ".com", ".cbt", ".bin", ".bs", ".bss", ".0", ".img"];
const NOT_LINUX_KEYWORDS = ["COM32", "COMBOOT", "BOOT", "BSS", "PXE", "FDIMAGE", "CONFIG", "LOCALBOOT"];

interface Line {
  readonly keyword: string;
  /** Offsets in the file of the value after the keyword (trailing blanks excluded). */
  readonly start: number;
  readonly end: number;
  readonly value: string;
  /** Whether blanks separate the value from the keyword (an arg added to a bare "APPEND" needs them). */
  readonly spaced: boolean;
}

interface Label {
  readonly name: string;
  /** The LINUX or KERNEL line, or another way of booting (COM32, LOCALBOOT...). */
  readonly boot?: Line;
  readonly append?: Line;
  readonly menuDefault: boolean;
}

interface SyslinuxConfig {
  readonly defaultLabel?: string;
  readonly globalAppend?: Line;
  readonly labels: readonly Label[];
}

function parseSyslinuxConfig(text: string): SyslinuxConfig {
  const labels: { name: string; boot?: Line; append?: Line; menuDefault: boolean }[] = [];
  let defaultLabel: string | undefined;
  let globalAppend: Line | undefined;
  let inText = false;
  let at = 0;
  for (const raw of text.split("\n")) {
    const lineStart = at;
    at += raw.length + 1;
    const match = /^([ \t]*)([^ \t\r#]+)([ \t]*)(.*?)[ \t\r]*$/.exec(raw);
    if (!match) continue;
    const keyword = match[2].toUpperCase();
    // TEXT HELP ... ENDTEXT is free text shown in the menu, not config.
    if (inText) {
      inText = keyword !== "ENDTEXT";
      continue;
    }
    const value = match[4];
    const start = lineStart + match[1].length + match[2].length + match[3].length;
    const line: Line = { keyword, start, end: start + value.length, value, spaced: match[3] !== "" };
    const label = labels[labels.length - 1];
    if (keyword === "TEXT" && value.toUpperCase() === "HELP") inText = true;
    else if (keyword === "LABEL") labels.push({ name: value, menuDefault: false });
    else if (keyword === "DEFAULT") defaultLabel = value;
    else if (keyword === "MENU" && label && value.toUpperCase() === "DEFAULT") label.menuDefault = true;
    else if (keyword === "APPEND" && label) label.append = line;
    else if (keyword === "APPEND") globalAppend = line;
    else if (label && (keyword === "LINUX" || keyword === "KERNEL" || NOT_LINUX_KEYWORDS.includes(keyword))) label.boot = line;
  }
  return { defaultLabel, globalAppend, labels };
}

/**
 * Why a label's kernel takes none of our args, or undefined when it boots Linux. memtest86+ is
 * loaded like a Linux kernel (Unraid: `kernel /memtest`) but is not one; it has no APPEND either.
 */
function notLinux(label: Label): string | undefined {
  const boot = label.boot;
  if (!boot) return "it boots nothing of its own";
  if (boot.keyword !== "LINUX" && boot.keyword !== "KERNEL") return `it boots with ${boot.keyword}`;
  const file = boot.value.split(/[ \t]/)[0].toLowerCase();
  const base = file.slice(file.lastIndexOf("/") + 1);
  if (base.includes("memtest")) return `${base} is memtest86+, not Linux`;
  if (boot.keyword === "KERNEL" && NOT_LINUX_EXTENSIONS.some((ext) => base.endsWith(ext))) return `${base} is not a Linux kernel`;
  return undefined;
}

/** LABEL name -> what this resource changed on that label's APPEND line. */
export type SyslinuxOwnership = Readonly<Record<string, TokenOwnership>>;

export interface SyslinuxConfigRequest {
  /** The config as read from the host. */
  readonly text: string;
  readonly ensure: readonly string[];
  readonly remove?: readonly string[];
  readonly previouslyOwned?: SyslinuxOwnership;
  /** Without previouslyOwned: the file as vfio-host saved it before its first edit, to recognise our own args in. */
  readonly backup?: string;
  /** For messages, e.g. /boot/syslinux/syslinux.cfg. */
  readonly path?: string;
}

export interface SyslinuxConfigPlan {
  readonly text: string;
  readonly owned: SyslinuxOwnership;
  readonly changes: readonly string[];
}

function linuxLabels(config: SyslinuxConfig, path: string): Label[] {
  const labels = config.labels.filter((label) => notLinux(label) === undefined);
  const names = labels.map((label) => label.name);
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined) {
    throw new Error(`${path} has LABEL ${twice} twice; syslinux boots the first one it finds. Rename or delete the other`);
  }
  return labels;
}

/** Replaces each [start, end) range with its text; ranges must not overlap. */
function splice(text: string, edits: { start: number; end: number; text: string }[]): string {
  let out = text;
  for (const edit of [...edits].sort((a, b) => b.start - a.start)) out = out.slice(0, edit.start) + edit.text + out.slice(edit.end);
  return out;
}

/** Edits the APPEND line of every label that boots Linux, so the args hold whichever entry is picked at the menu. */
export function planSyslinuxConfig(request: SyslinuxConfigRequest): SyslinuxConfigPlan {
  const path = request.path ?? "the syslinux config";
  const generator = /Do not edit this file manually, use: (\S+)/.exec(request.text);
  if (generator) {
    throw new Error(`${path} is written by ${generator[1]}, which rewrites it at every kernel update and would drop the arguments; set them where ${generator[1]} reads them instead`);
  }
  const config = parseSyslinuxConfig(request.text);
  const labels = linuxLabels(config, path);
  if (labels.length === 0) throw new Error(`${path} has no LABEL that boots a Linux kernel (LINUX or KERNEL line); check that this is the config the host boots`);
  const backupLabels = request.backup === undefined ? undefined : parseSyslinuxConfig(request.backup).labels;
  const owned: Record<string, TokenOwnership> = {};
  const changes: string[] = [];
  const edits = labels.map((label) => {
    const append = label.append;
    if (!append) {
      throw new Error(
        `${path}: LABEL ${label.name} boots a kernel but has no APPEND line of its own (it takes the global APPEND, if any); ` +
          `add "APPEND" with the arguments it should boot with to that label`,
      );
    }
    if (!append.spaced && request.ensure.length > 0) {
      throw new Error(`${path}: LABEL ${label.name} has a bare "APPEND"; write it as "APPEND " followed by the arguments it boots with`);
    }
    if (append.value === "-") {
      throw new Error(`${path}: LABEL ${label.name} has "APPEND -", which boots it with no arguments on purpose; write its arguments instead of "-" if it should get ours`);
    }
    const backup = backupLabels?.find((b) => b.name === label.name)?.append?.value;
    const plan = planTokens(append.value, { ...request, previouslyOwned: request.previouslyOwned?.[label.name], backup }, kernelArgSyntax);
    owned[label.name] = plan.owned;
    changes.push(...plan.changes.map((c) => `LABEL ${label.name}: ${c}`));
    return { start: append.start, end: append.end, text: plan.text };
  });
  return { text: splice(request.text, edits), owned, changes };
}

export function revertSyslinuxConfig(text: string, owned: SyslinuxOwnership): string {
  const config = parseSyslinuxConfig(text);
  const edits = Object.entries(owned).flatMap(([name, tokens]) => {
    const append = config.labels.find((label) => label.name === name)?.append;
    return append ? [{ start: append.start, end: append.end, text: revertTokenText(append.value, tokens, kernelArgSyntax) }] : [];
  });
  return splice(text, edits);
}

/**
 * Checks the label that boots without a keypress: the one DEFAULT names, else the one marked
 * MENU DEFAULT (menu.c32 given as DEFAULT, as Unraid and Alpine do), else the first.
 */
export function syslinuxConfigHasArgs(text: string, args: readonly string[], path = "the syslinux config"): BootConfigCheck {
  const config = parseSyslinuxConfig(text);
  const label =
    config.labels.find((l) => l.name === config.defaultLabel) ?? config.labels.find((l) => l.menuDefault) ?? config.labels[0];
  if (!label) return { ok: false, problems: [`${path} has no LABEL`] };
  const why = notLinux(label);
  if (why) return { ok: false, problems: [`${path}: the default LABEL ${label.name} does not boot Linux (${why})`] };
  const append = label.append ?? config.globalAppend;
  const missing = missingKernelArgs(append?.value ?? "", args);
  return missing.length === 0
    ? { ok: true, problems: [] }
    : { ok: false, problems: [`${path}: the default LABEL ${label.name} boots without ${missing.join(" ")}`] };
}
