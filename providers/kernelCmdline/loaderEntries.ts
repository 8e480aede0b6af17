// Boot Loader Specification type #1 entries (uapi-group.org/specifications/specs/boot_loader_specification):
// <ESP or XBOOTLDR>/loader/entries/*.conf, one `key value` per line, read by systemd-boot and, on
// Fedora/RHEL, by GRUB's blscfg module, and edited there by grubby. `options` may appear more than
// once: the loader joins the lines, in order, into one kernel command line.
import { kernelArgSyntax, missingKernelArgs } from "../kernel/cmdline";
import { catFiles, filesFromSection } from "../ssh/sections";
import { parseWhitespaceTokens, planTokens, revertTokenText, TokenList, TokenOwnership, TokenPlan, TokenSyntax } from "../text/tokenList";
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
    `are not in the entry; use the grubby backend (grubby --update-kernel=ALL --args=...), which edits grubenv's kernelopts ` +
    `too, or replace $kernelopts in each entry with the value \`grub2-editenv - list\` shows for kernelopts`
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
      spans.push({ start: at + match[0].length, end: at + body, spaced: match[2] !== "" });
    }
    at += line.length + 1;
  }
  return spans;
}

/**
 * The args of all `options` lines as one token list, the rest of the entry held in its leading,
 * separators and trailing bytes: removals and replacements reach every line, and additions go
 * at the end of the last one, which is the end of the command line the loader joins.
 */
const loaderEntrySyntax: TokenSyntax = {
  ...kernelArgSyntax,
  parse: (text: string): TokenList => {
    const values = optionsValues(text);
    const spans: { start: number; end: number }[] = [];
    for (const value of values) {
      const list = parseWhitespaceTokens(text.slice(value.start, value.end));
      let at = value.start + list.leading.length;
      list.tokens.forEach((token, i) => {
        spans.push({ start: at, end: at + token.length });
        at += token.length + (list.separators[i]?.length ?? 0);
      });
    }
    if (spans.length === 0) {
      // An addition lands after the last options line's whitespace.
      const split = values.length > 0 ? values[values.length - 1].end : text.length;
      return { leading: text.slice(0, split), tokens: [], separators: [], trailing: text.slice(split) };
    }
    return {
      leading: text.slice(0, spans[0].start),
      tokens: spans.map((s) => text.slice(s.start, s.end)),
      separators: spans.slice(1).map((s, i) => text.slice(spans[i].end, s.start)),
      trailing: text.slice(spans[spans.length - 1].end),
    };
  },
};

export interface LoaderEntryRequest {
  /** The entry's file as read from the host. */
  readonly text: string;
  readonly ensure: readonly string[];
  readonly remove?: readonly string[];
  readonly previouslyOwned?: TokenOwnership;
  /** Without previouslyOwned: the file as vfio-host saved it before its first edit, to recognise our own args in. */
  readonly backup?: string;
  /** For messages, e.g. /boot/efi/loader/entries/debian-6.1.0-18-amd64.conf. */
  readonly path?: string;
}

export function planLoaderEntry(request: LoaderEntryRequest): TokenPlan {
  const path = request.path ?? "the loader entry";
  const problem = kerneloptsProblem(request.text, path);
  if (problem) throw new Error(problem);
  const values = optionsValues(request.text);
  if (values.length === 0) {
    throw new Error(
      `${path} has no options line, so there is no command line to add to; add one with the arguments the entry boots with ` +
        `(e.g. "options root=UUID=... ro", as in /proc/cmdline without BOOT_IMAGE= and initrd=)`,
    );
  }
  const last = values[values.length - 1];
  if (!last.spaced && request.ensure.length > 0 && loaderEntrySyntax.parse(request.text).tokens.length === 0) {
    throw new Error(`${path}: its last options line is a bare "options"; write it as "options " followed by the arguments the entry boots with`);
  }
  return planTokens(request.text, request, loaderEntrySyntax);
}

export function revertLoaderEntry(text: string, owned: TokenOwnership): string {
  return revertTokenText(text, owned, loaderEntrySyntax);
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

/** grubby (Fedora/RHEL) edits every BLS entry, and grubenv's kernelopts where entries still use it. */
export function grubbyArgv(change: { add: readonly string[]; remove: readonly string[] }): string[] {
  return [
    "grubby",
    "--update-kernel=ALL",
    ...(change.add.length > 0 ? [`--args=${change.add.join(" ")}`] : []),
    ...(change.remove.length > 0 ? [`--remove-args=${change.remove.join(" ")}`] : []),
  ];
}
