import { z } from "zod";
import { expected, explain, shown } from "../inputErrors";

// Names go into argv (so no leading "-", which virsh would read as an option), into file names
// under /etc/libvirt and /var/lib/libvirt (so no "/"), and into line-based virsh output.
const LIBVIRT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** A domain, pool or network name: letters, digits and - _ . , starting with a letter or digit. */
export function libvirtName(example: string) {
  const what = "a libvirt name (letters, digits, - _ . and starting with a letter or digit)";
  return z.string(expected(what, example)).regex(LIBVIRT_NAME, expected(what, example));
}

// A volume is a file directly inside a dir pool's directory.
const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/;

/** A volume (file) name inside a pool: letters, digits and - _ . +, starting with a letter or digit. */
export function volumeName(example: string) {
  const what = "a volume file name (letters, digits, - _ . + and starting with a letter or digit; no /)";
  return z.string(expected(what, example)).regex(VOLUME_NAME, expected(what, example));
}

// Quotes and control characters are refused because a path also travels through the fact
// scripts and comes back in line-based output (virsh pool-info, vol-path), where a newline
// would split one record into two.
const UNSAFE_PATH_CHAR = /["'`\\\u0000-\u001F\u007F]/;

/** An absolute host path, returned without a trailing slash. */
export function absolutePath(example: string) {
  return z
    .string(expected("an absolute path", example))
    .refine((p) => p.startsWith("/"), explain((p: string) => `${shown(p)} is not absolute; write for example ${example}`))
    .refine(
      (p) => !UNSAFE_PATH_CHAR.test(p),
      explain(
        (p: string) =>
          `${shown(p)} contains a quote, backslash, newline or other control character, which the fact scripts ` +
          `and virsh's line-based output cannot carry safely; write a plain path such as ${example}`,
      ),
    )
    .refine(
      (p) => !p.split("/").some((segment) => segment === "." || segment === ".."),
      explain((p: string) => `${shown(p)} contains a "." or ".." segment; write the resolved path, for example ${example}`),
    )
    .transform(normalisePath);
}

/** One spelling per directory: repeated slashes collapsed, no trailing slash. */
export function normalisePath(path: string): string {
  return path.replace(/\/{2,}/g, "/").replace(/(.)\/$/, "$1");
}
