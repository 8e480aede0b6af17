import { readFileSync } from "fs";
import { join } from "path";
import { KernelModules, parseModulesBuiltin, parseModulesDep } from "../../../providers/initramfsModules/kernelModules";

const read = (name: string) => readFileSync(join(__dirname, "fixtures", name), "utf8");

/** Debian 12 (kernel 6.1, before vfio_virqfd was merged into vfio). */
export const debianInitramfsToolsModules = read("debian12-initramfs-tools-modules");
export const debianKernel: KernelModules = {
  release: "6.1.0-18-amd64",
  loadable: parseModulesDep(read("debian12-modules.dep")),
  builtin: parseModulesBuiltin(read("debian12-modules.builtin")),
};
export const debianLsinitramfsBefore = read("debian12-lsinitramfs-before.txt");
export const debianLsinitramfsAfter = read("debian12-lsinitramfs-after.txt");

/** Alpine: the reference host's 5.15 lts kernel and a current 6.6 lts one (modules gzipped, no vfio_virqfd). */
export const alpineMkinitfsConf = read("alpine-mkinitfs.conf");
export const alpine515Kernel: KernelModules = { release: "5.15.74-0-lts", loadable: parseModulesDep(read("alpine-5.15-modules.dep")), builtin: {} };
export const alpine66Kernel: KernelModules = {
  release: "6.6.58-0-lts",
  loadable: parseModulesDep(read("alpine-6.6-modules.dep")),
  builtin: parseModulesBuiltin(read("alpine-6.6-modules.builtin")),
};
export const alpine66MkinitfsList = read("alpine-6.6-mkinitfs-l.txt");
