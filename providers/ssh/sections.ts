// Facts in one round trip: several read-only shell snippets run by one `sh -c`, each section's
// output framed by a random boundary so that no file content can be mistaken for a frame.
import { randomBytes } from "crypto";
import type { RemoteHost } from "./host";
import { shellQuote } from "./quote";

export interface SectionOptions {
  /** Positional parameters of every snippet ("$1"...). */
  args?: readonly string[];
  escalate?: boolean;
  /**
   * Shell code run once before the snippets, whose variables they all see (e.g. NEXT_KERNEL's
   * `$release`): worked out once per round trip instead of once per snippet.
   */
  prelude?: string;
}

/**
 * Runs each snippet (our own constant shell code, never user input: pass that as `args`, read as
 * "$1"...) and returns its stdout by name. A snippet's failure is its own business: it prints what
 * it can and the others still run. A snippet this run already read (same code, prelude, args and
 * escalation, nothing changed on the host since: RemoteHost.reads) is not run again; the others
 * go in one round trip. sbin is on PATH: a non-root login on Debian lacks it, where modprobe,
 * lspci and grub-probe live.
 */
export async function readSections<K extends string>(host: RemoteHost, snippets: Record<K, string>, options: SectionOptions = {}): Promise<Record<K, string>> {
  const names = Object.keys(snippets) as K[];
  const escalated = host.escalates && options.escalate !== false;
  const keyOf = (name: K) => `sections ${JSON.stringify([escalated, options.prelude ?? "", options.args ?? [], snippets[name]])}`;
  const reads = host.reads();
  const unread = names.filter((name) => !reads.has(keyOf(name)));
  if (unread.length > 0) {
    const reading = runSections(host, unread, snippets, options);
    for (const name of unread) {
      const section = reading.then((out) => out[name]);
      // A failed read is not kept: the next caller tries again. The caller awaiting it sees the error.
      section.catch(() => {
        if (reads.get(keyOf(name)) === section) reads.delete(keyOf(name));
      });
      reads.set(keyOf(name), section);
    }
  }
  const values = await Promise.all(names.map((name) => reads.get(keyOf(name)) as Promise<string>));
  return Object.fromEntries(names.map((name, i) => [name, values[i]])) as Record<K, string>;
}

async function runSections<K extends string>(host: RemoteHost, names: K[], snippets: Record<K, string>, options: SectionOptions): Promise<Record<K, string>> {
  const boundary = `--vfio-host-${randomBytes(12).toString("hex")}--`;
  const script = [
    'PATH="$PATH:/usr/sbin:/sbin"',
    ...(options.prelude ? [options.prelude] : []),
    ...names.map((name) => `printf '\\n%s %s\\n' "$VFIO_HOST_BOUNDARY" ${name}\n( ${snippets[name]}\n) 2>/dev/null || true`),
  ].join("\n");
  const result = await host.run(["env", `VFIO_HOST_BOUNDARY=${boundary}`, "sh", "-c", script, "sh", ...(options.args ?? [])], {
    escalate: options.escalate,
    readOnly: true,
  });
  const out = {} as Record<K, string>;
  const parts = result.stdout.split(`\n${boundary} `);
  for (const part of parts.slice(1)) {
    const newline = part.indexOf("\n");
    const name = part.slice(0, newline) as K;
    if (names.includes(name)) out[name] = part.slice(newline + 1);
  }
  for (const name of names) out[name] ??= "";
  return out;
}

/** A snippet printing whether a file exists and its bytes; `fileFromSection` reads that back. */
export function catFile(path: string): string {
  const quoted = shellQuote(path).toString("utf8");
  return `if [ -e ${quoted} ]; then echo present; cat ${quoted}; else echo absent; fi`;
}

/** The file's text, or undefined when it did not exist. */
export function fileFromSection(section: string): string | undefined {
  return section.startsWith("present\n") ? section.slice("present\n".length) : undefined;
}

/**
 * A snippet printing every regular file that the shell words `globs` expand to (e.g.
 * `/etc/default/grub.d/*.cfg`, unquoted so the shell expands them) as NUL-separated path/content
 * pairs: file names are the host's, not ours to frame. `filesFromSection` reads them back.
 */
export function catFiles(globs: string): string {
  return `for f in ${globs}; do [ -f "$f" ] && printf '%s\\0' "$f" && cat "$f" && printf '\\0'; done`;
}

/** The files a catFiles snippet printed, in the order the shell listed them. */
export function filesFromSection(section: string): { path: string; text: string }[] {
  const parts = section.split("\0");
  const files = [];
  for (let i = 0; i + 1 < parts.length; i += 2) files.push({ path: parts[i], text: parts[i + 1] });
  return files;
}
