// Boot Loader Specification type #1 entries (uapi-group.org/specifications/specs/boot_loader_specification):
// <ESP or XBOOTLDR>/loader/entries/*.conf, one `key value` per line, read by systemd-boot and, on
// Fedora/RHEL, by GRUB's blscfg module, and edited there by grubby. `options` may appear more than
// once: the loader joins the lines, in order, into one kernel command line.
import { kernelArgKey, kernelArgSyntax, missingKernelArgs } from "../kernel/cmdline";
import { catFiles, filesFromSection } from "../ssh/sections";
import { adoptTokens, describeTokenChanges, parseWhitespaceTokens, planTokens, revertTokenText, TokenOwnership, TokenRequest } from "../text/tokenList";
import type { BootConfigCheck } from "./bootConfig";

export interface LoaderEntry {
  readonly title?: string;
  readonly version?: string;
  readonly linux?: string;
  readonly initrd: readonly string[];
  /** Every `options` line's value, in order. */
  readonly options: readonly string[];
}

const LINE = /^[ \t]*([A-Za-z0-9_-]+)(?:[ \t]+(.*?))?[ \t]*$/;

export function parseLoaderEntry(text: string): LoaderEntry {
  const values = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    if (/^[ \t]*#/.test(line)) continue;
    const match = LINE.exec(line.replace(/\r$/, ""));
    if (!match) continue;
    values.set(match[1], [...(values.get(match[1]) ?? []), match[2] ?? ""]);
  }
  const first = (key: string) => values.get(key)?.[0];
  return { title: first("title"), version: first("version"), linux: first("linux"), initrd: values.get("initrd") ?? [], options: values.get("options") ?? [] };
}

/** The kernel the entry boots (`version`, which kernel-install, grubby and proxmox-boot-tool all write). */
export function loaderEntryKernelVersion(text: string): string | undefined {
  return parseLoaderEntry(text).version;
}

/**
 * Fedora 30-33 and RHEL 8 wrote `options $kernelopts`, which GRUB's blscfg expands from
 * /boot/grub2/grubenv at boot: the args are not in the entry, so editing it would not reach them.
 */
function kerneloptsProblem(text: string, path: string): string | undefined {
  if (!parseLoaderEntry(text).options.some((value) => parseWhitespaceTokens(value).tokens.includes("$kernelopts"))) return undefined;
  return (
    `${path}: options refers to $kernelopts, which GRUB fills in from /boot/grub2/grubenv at boot, so the arguments ` +
    `are not in the entry, and vfio-host edits entries, not grubenv: replace $kernelopts in each entry with the value ` +
    `\`grub2-editenv - list\` shows for kernelopts, then run this again`
  );
}

/** Where each `options` value starts and ends in the entry's text. */
function optionsValues(text: string): { start: number; end: number; spaced: boolean }[] {
  const spans = [];
  let at = 0;
  for (const line of text.split("\n")) {
    const match = /^([ \t]*options)([ \t]+|$)/.exec(line);
    if (match) {
      const body = line.endsWith("\r") ? line.length - 1 : line.length;
      // A line of blanks after the keyword keeps all but the first in its value: that is where a
      // removal that emptied the line left them, so a revert puts its token back before them.
      const keyword = at + match[1].length + (match[0].length === body ? Math.min(1, match[2].length) : match[2].length);
      spans.push({ start: keyword, end: at + body, spaced: match[2] !== "" });
    }
    at += line.length + 1;
  }
  return spans;
}

export type LoaderEntryOwnership = readonly TokenOwnership[];

export interface LoaderEntryRequest {
  /** The entry's file as read from the host. */
  readonly text: string;
  readonly ensure: readonly string[];
  readonly remove?: readonly string[];
  /** What the last apply changed on each options line, in order. */
  readonly previouslyOwned?: LoaderEntryOwnership;
  /** Without previouslyOwned: the file as vfio-host saved it before its first edit, to recognise our own args in. */
  readonly backup?: string;
  /** For messages, e.g. /boot/efi/loader/entries/debian-6.1.0-18-amd64.conf. */
  readonly path?: string;
}

export interface LoaderEntryPlan {
  readonly text: string;
  readonly owned: LoaderEntryOwnership;
  readonly changes: readonly string[];
}

/**
 * What one options line gets: the first the whole request (its additions go there); later lines
 * have other values of our keys replaced and `remove`d args taken off, so the joined command line
 * carries ours wherever a key sits. Lines after a `--` hold init's args, not the kernel's.
 */
function lineRequests(values: readonly string[], request: TokenRequest): TokenRequest[] {
  const dashes = values.findIndex((value) => parseWhitespaceTokens(value).tokens.includes("--"));
  return values.map((value, i) => {
    if (i === 0) return request;
    if (dashes >= 0 && i > dashes) return { ensure: [] };
    const list = parseWhitespaceTokens(value);
    const keys = new Set(list.tokens.slice(0, kernelArgSyntax.end(list)).map(kernelArgKey));
    return { ensure: request.ensure.filter((arg) => keys.has(kernelArgKey(arg))), remove: request.remove };
  });
}

/** Replaces each options value with its new text. */
function withValues(text: string, values: readonly string[]): string {
  let out = text;
  optionsValues(text)
    .map((span, i) => ({ ...span, value: values[i] }))
    .reverse()
    .forEach((span) => {
      out = out.slice(0, span.start) + span.value + out.slice(span.end);
    });
  return out;
}

const valuesOf = (text: string) => optionsValues(text).map((span) => text.slice(span.start, span.end));

/** Our own args recognised from the backup, line by line; undefined when its options lines differ in number. */
function adoptLoaderEntry(text: string, backup: string, request: TokenRequest): LoaderEntryOwnership | undefined {
  const before = valuesOf(backup);
  const after = valuesOf(text);
  if (before.length !== after.length) return undefined;
  const requests = lineRequests(before, request);
  const owned = before.map((value, i) => adoptTokens(value, after[i], requests[i], kernelArgSyntax));
  return owned.every((o) => o !== undefined) ? (owned as TokenOwnership[]) : undefined;
}

/** Edits the options lines only (additions on the first); every other byte of the entry stays. */
export function planLoaderEntry(request: LoaderEntryRequest): LoaderEntryPlan {
  const path = request.path ?? "the loader entry";
  const problem = kerneloptsProblem(request.text, path);
  if (problem) throw new Error(problem);
  const spans = optionsValues(request.text);
  if (spans.length === 0) {
    throw new Error(
      `${path} has no options line, so there is no command line to add to; add one with the arguments the entry boots with ` +
        `(e.g. "options root=UUID=... ro", as in /proc/cmdline without BOOT_IMAGE= and initrd=)`,
    );
  }
  const current = valuesOf(request.text);
  if (!spans[0].spaced && request.ensure.length > 0 && current[0] === "") {
    throw new Error(`${path}: its first options line is a bare "options"; write it as "options " followed by the arguments the entry boots with`);
  }
  const tokenRequest = { ensure: request.ensure, remove: request.remove };
  const previous = request.previouslyOwned ?? (request.backup !== undefined ? adoptLoaderEntry(request.text, request.backup, tokenRequest) : undefined);
  const bases = current.map((value, i) => (previous?.[i] ? revertTokenText(value, previous[i], kernelArgSyntax) : value));
  const plans = lineRequests(bases, tokenRequest).map((lineRequest, i) => planTokens(bases[i], lineRequest, kernelArgSyntax));
  const changes = current.flatMap((value, i) =>
    describeTokenChanges(kernelArgSyntax.parse(value), kernelArgSyntax.parse(plans[i].text), kernelArgSyntax).map((c) =>
      current.length > 1 ? `options line ${i + 1}: ${c}` : c,
    ),
  );
  return { text: withValues(request.text, plans.map((p) => p.text)), owned: plans.map((p) => p.owned), changes };
}

export function revertLoaderEntry(text: string, owned: LoaderEntryOwnership): string {
  return withValues(text, valuesOf(text).map((value, i) => (owned[i] ? revertTokenText(value, owned[i], kernelArgSyntax) : value)));
}

/** Whether the command line the entry boots (its options lines joined) carries the args. */
export function loaderEntryHasArgs(text: string, args: readonly string[], path = "the loader entry"): BootConfigCheck {
  const problem = kerneloptsProblem(text, path);
  if (problem) return { ok: false, problems: [problem] };
  const missing = missingKernelArgs(parseLoaderEntry(text).options.join(" "), args);
  return missing.length === 0 ? { ok: true, problems: [] } : { ok: false, problems: [`${path}: options lack ${missing.join(" ")}`] };
}

/**
 * Every loader entry on the host, for readSections. The ESP may be mounted at /efi, /boot or
 * /boot/efi, and entries may live on an XBOOTLDR partition instead (bootctl(1): --print-esp-path,
 * --print-boot-path, the latter the XBOOTLDR partition when there is one); a directory reached
 * twice (/boot being the ESP) is listed once. Needs root where the ESP is mounted 0700 (Debian's
 * /boot/efi). ESPs that proxmox-boot-tool keeps unmounted are not listed.
 */
export const LOADER_ENTRIES_SNIPPET = [
  "esp=$(bootctl --print-esp-path 2>/dev/null); boot=$(bootctl --print-boot-path 2>/dev/null); seen=''",
  'for dir in "$esp" "$boot" /efi /boot /boot/efi; do',
  '  [ -n "$dir" ] && [ -d "$dir/loader/entries" ] || continue',
  '  real=$(cd -P "$dir/loader/entries" && pwd) || continue',
  '  case "$seen" in *"|$real|"*) continue ;; esac',
  '  seen="$seen|$real|"',
  `  ${catFiles('"$dir"/loader/entries/*.conf')}`,
  "done",
].join("\n");

export interface LoaderEntryFile {
  readonly path: string;
  readonly text: string;
}

export function parseLoaderEntries(section: string): LoaderEntryFile[] {
  return filesFromSection(section);
}
