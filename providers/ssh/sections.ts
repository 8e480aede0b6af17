// Facts in one round trip: several read-only shell snippets run by one `sh -c`, each section's
// output framed by a random boundary so that no file content can be mistaken for a frame.
import { randomBytes } from "crypto";
import type { RemoteHost } from "./host";
import { shellQuote } from "./quote";

/**
 * Runs each snippet (our own constant shell code, never user input: pass that as `args`, read as
 * "$1"...) and returns its stdout by name. A snippet's failure is its own business: it prints what
 * it can and the others still run.
 */
export async function readSections<K extends string>(
  host: RemoteHost,
  snippets: Record<K, string>,
  options: { args?: readonly string[]; escalate?: boolean } = {},
): Promise<Record<K, string>> {
  const boundary = `--vfio-host-${randomBytes(12).toString("hex")}--`;
  const names = Object.keys(snippets) as K[];
  const script = names
    .map((name) => `printf '\\n%s %s\\n' "$VFIO_HOST_BOUNDARY" ${name}\n( ${snippets[name]}\n) 2>/dev/null || true`)
    .join("\n");
  const result = await host.run(
    ["env", `VFIO_HOST_BOUNDARY=${boundary}`, "sh", "-c", script, "sh", ...(options.args ?? [])],
    { escalate: options.escalate },
  );
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
