// The kernel that boots next and its modules, as InitramfsModules and VfioBinding need them.
import { KernelModules, parseModulesBuiltin, parseModulesDep } from "./modules";

/**
 * The kernel that boots next: the newest release in /lib/modules that has an image in /boot
 * (Debian/Ubuntu: vmlinuz-<release>; Alpine: vmlinuz-<flavor>, the release's last word). GRUB's
 * generated menu puts the newest version first, so after an upgrade that is what the reboot runs,
 * not `uname -r`; leftover module trees of removed kernels have no image and do not count. The sort
 * key zero-pads every number of the release ("6.1.0-31" before "6.12.0-1"): `sort -V` is not POSIX.
 */
export const NEXT_KERNEL = `release=$(for dep in /lib/modules/*/modules.dep; do
  r=\${dep%/modules.dep}; r=\${r##*/}
  if [ -e "/boot/vmlinuz-$r" ] || [ -e "/boot/vmlinuz-\${r##*-}" ]; then echo "$r"; fi
done | awk '{ k = $0; gsub(/[^0-9]+/, " ", k); n = split(k, v, " "); key = ""
  for (i = 1; i <= n; i++) key = key sprintf("%08d", v[i]); print key " " $0 }' | sort | tail -n 1 | cut -d" " -f2)
[ -n "$release" ] || release=$(uname -r)`;

/** Sections for readSections with NEXT_KERNEL as the prelude: the releases and the next kernel's module lists. */
export const KERNEL_SECTIONS = {
  kernel: `echo "running $(uname -r)"
echo "next $release"`,
  // Only the module paths: the dependency lists would double the bytes and nothing reads them.
  modulesDep: `cut -d: -f1 "/lib/modules/$release/modules.dep"`,
  modulesBuiltin: `cat "/lib/modules/$release/modules.builtin"`,
} as const;

/** The kernel section: "running <uname -r>" and "next <release>". */
export function parseKernelReleases(text: string): { running: string; next: string } {
  const tagged = (tag: string) => text.split("\n").filter((l) => l.startsWith(`${tag} `)).map((l) => l.slice(tag.length + 1).trim());
  const running = tagged("running")[0] ?? "";
  return { running, next: tagged("next")[0] || running };
}

export function parseNextKernel(sections: Record<keyof typeof KERNEL_SECTIONS, string>): KernelModules {
  return {
    release: parseKernelReleases(sections.kernel).next,
    loadable: parseModulesDep(sections.modulesDep),
    builtin: parseModulesBuiltin(sections.modulesBuiltin),
  };
}
