// Kernel modules: how they are named, what the installed kernel offers (from
// /lib/modules/<release>/modules.dep and modules.builtin, modules.dep(5)) and the files that list
// modules to load. The VFIO module list is derived from what the kernel offers: vfio_virqfd, for
// one, was merged into vfio in Linux 6.2 and must only be named where it still exists.
import { splitTokens, TokenSyntax } from "../text/tokenList";

/** Module names: modprobe treats `-` and `_` alike. */
export const normalizeModuleName = (name: string): string => name.replace(/-/g, "_");

export interface KernelModules {
  readonly release: string;
  /** Module name (underscores) to its path under /lib/modules/<release>, from modules.dep. */
  readonly loadable: Readonly<Record<string, string>>;
  /** Module name (underscores) to its path, from modules.builtin: built in, nothing to load. */
  readonly builtin: Readonly<Record<string, string>>;
}

/** `kernel/drivers/vfio/pci/vfio-pci.ko.zst` -> `vfio-pci` (the name modprobe and mkinitfs use). */
function moduleFileName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1).replace(/\.ko(\.[a-z0-9]+)?$/, "");
}

function byModuleName(paths: readonly string[]): Record<string, string> {
  return Object.fromEntries(paths.map((path) => [normalizeModuleName(moduleFileName(path)), path]));
}

/** modules.dep lines: `kernel/drivers/vfio/vfio.ko.xz: kernel/drivers/vfio/...`. */
export function parseModulesDep(text: string): Record<string, string> {
  return byModuleName(
    text
      .split("\n")
      .map((line) => line.split(":")[0].trim())
      .filter((path) => path.endsWith(".ko") || /\.ko\.[a-z0-9]+$/.test(path)),
  );
}

/** modules.builtin lines: `kernel/drivers/usb/host/ehci-hcd.ko`. */
export function parseModulesBuiltin(text: string): Record<string, string> {
  return byModuleName(text.split("\n").map((line) => line.trim()).filter((line) => line !== ""));
}

export interface VfioModule {
  /** With underscores, as the kernel names it: `vfio_pci`. */
  readonly name: string;
  /** As its file is named, which is how Alpine writes modules=: `vfio-pci`. */
  readonly fileName: string;
  /** Under /lib/modules/<release>. */
  readonly path: string;
  readonly builtin: boolean;
}

const REQUIRED = ["vfio", "vfio_pci", "vfio_iommu_type1"] as const;
/** Only on kernels before 6.2. */
const OPTIONAL = ["vfio_virqfd"] as const;

/** The VFIO modules of this kernel, in load order. Throws when the kernel lacks VFIO. */
export function moduleListForKernel(kernel: KernelModules): VfioModule[] {
  const missing = absentModules(kernel, REQUIRED);
  if (missing.length > 0) {
    throw new Error(
      `Kernel ${kernel.release} has no ${missing.join(", ")} (neither in modules.dep nor in modules.builtin), so it cannot ` +
        `hand devices to vfio-pci; boot a kernel built with CONFIG_VFIO, CONFIG_VFIO_PCI and CONFIG_VFIO_IOMMU_TYPE1`,
    );
  }
  return [...REQUIRED, ...OPTIONAL.filter((name) => absentModules(kernel, [name]).length === 0)].map((name) => {
    const builtin = kernel.builtin[name] !== undefined;
    const path = builtin ? kernel.builtin[name] : kernel.loadable[name];
    return { name, fileName: moduleFileName(path), path, builtin };
  });
}

/** Names (either spelling) the kernel neither ships as a module nor builds in. */
export function absentModules(kernel: KernelModules, names: readonly string[]): string[] {
  return names.filter((name) => {
    const key = normalizeModuleName(name);
    return kernel.loadable[key] === undefined && kernel.builtin[key] === undefined;
  });
}

/**
 * Which loadable modules an initramfs listing lacks. Takes `lsinitramfs` output (Debian),
 * `mkinitfs -l` output or `cpio -t` of the image (Alpine): one path per line, any prefix,
 * compressed or not. Built-in modules need no file.
 */
export function missingFromInitramfs(listing: string, modules: readonly VfioModule[]): string[] {
  const present = new Set(
    listing
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => /\.ko(\.[a-z0-9]+)?$/.test(line))
      .map((line) => normalizeModuleName(moduleFileName(line))),
  );
  return modules.filter((m) => !m.builtin && !present.has(m.name)).map((m) => m.name);
}

/**
 * The lines of a module list file: /etc/initramfs-tools/modules (initramfs-tools(7)), /etc/modules
 * and modules-load.d(5) all name one module per line, optional arguments after it, `#` comments. A
 * line that names a module (in either spelling) satisfies it, whatever its arguments.
 */
export const moduleLineSyntax: TokenSyntax = {
  parse: (text) => splitTokens(text, "\n"),
  separator: "\n",
  key: (line) => {
    const name = line.trim().split(/\s+/)[0];
    return name === "" || name.startsWith("#") ? undefined : normalizeModuleName(name);
  },
  satisfies: () => true,
  // A final newline leaves an empty last "line"; new lines go before it so the file still ends in one.
  end: (list) => (list.tokens.at(-1) === "" ? list.tokens.length - 1 : list.tokens.length),
};
