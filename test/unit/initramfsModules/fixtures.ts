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

/**
 * `lsinitrd` of Debian 12's dracut 059-4 (the dracut-core .deb's /usr/bin/lsinitrd, run with
 * dracutbasedir at its unpacked /usr/lib/dracut and GNU cpio 2.13) on two images built for the
 * test the way dracut lays them out: an early cpio with the microcode, then a zstd main cpio under
 * usr/lib/modules/6.1.0-18-amd64, one with the VFIO modules, modprobe.d/vfio.conf and the
 * 20-force_drivers.conf force_drivers writes, one without. The file content is dummy, the format real.
 */
export const debianLsinitrdBefore = read("debian12-lsinitrd-before.txt");
export const debianLsinitrdAfter = read("debian12-lsinitrd-after.txt");

/**
 * Arch: mkinitcpio.conf as mkinitcpio 39.2 installs it (mkinitcpio.conf at tag v39.2 of
 * gitlab.archlinux.org/archlinux/mkinitcpio/mkinitcpio, via its GitHub mirror archlinux/mkinitcpio);
 * the linux package's preset as the kernel's install hook writes it from mkinitcpio.d/hook.preset
 * (%PKGBASE% -> linux) at v35, which names ALL_config, and at v39.2, which no longer does; and
 * `lsinitcpio` of v39.2 (with bsdtar/bsdcpio from Debian's libarchive-tools 3.6.2) on an image laid out
 * as mkinitcpio builds it for 6.8.1-arch1-1 with MODULES=(vfio vfio_pci vfio_iommu_type1): early
 * cpio with microcode, zstd main cpio, modules .ko.zst (dummy content, real format).
 */
export const archMkinitcpioConf = read("arch-mkinitcpio.conf");
export const archV35Preset = read("arch-v35-linux.preset");
export const archV39Preset = read("arch-v39-linux.preset");
export const archLsinitcpio = read("arch-lsinitcpio.txt");
