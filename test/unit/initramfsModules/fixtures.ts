import { readFileSync } from "fs";
import { join } from "path";
import { KernelModules, parseModulesBuiltin, parseModulesDep } from "../../../providers/kernel/modules";

const read = (name: string) => readFileSync(join(__dirname, "fixtures", name), "utf8");
const kernel = (release: string, modulesDep: string, modulesBuiltin?: string): KernelModules => ({
  release,
  loadable: parseModulesDep(read(modulesDep)),
  builtin: modulesBuiltin ? parseModulesBuiltin(read(modulesBuiltin)) : {},
});

/** Debian 12 (kernel 6.1, before vfio_virqfd was merged into vfio). */
export const debianInitramfsToolsModules = read("debian12-initramfs-tools-modules");
export const debianKernel = kernel("6.1.0-18-amd64", "debian12-modules.dep", "debian12-modules.builtin");
export const debianLsinitramfsBefore = read("debian12-lsinitramfs-before.txt");
export const debianLsinitramfsAfter = read("debian12-lsinitramfs-after.txt");

/** Alpine: the reference host's 5.15 lts kernel and a current 6.6 lts one (modules gzipped, no vfio_virqfd). */
export const alpineMkinitfsConf = read("alpine-mkinitfs.conf");
export const alpine515Kernel = kernel("5.15.74-0-lts", "alpine-5.15-modules.dep");
export const alpine66Kernel = kernel("6.6.58-0-lts", "alpine-6.6-modules.dep", "alpine-6.6-modules.builtin");
export const alpine66MkinitfsList = read("alpine-6.6-mkinitfs-l.txt");
