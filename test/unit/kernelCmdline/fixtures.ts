import { readFileSync } from "fs";
import { join } from "path";

const read = (name: string) => readFileSync(join(__dirname, "fixtures", name), "utf8");

/** Debian 12 as installed: /etc/default/grub and the /boot/grub/grub.cfg update-grub wrote from it. */
export const debianDefaultGrub = read("debian12-default-grub");
export const debianGrubCfg = read("debian12-grub.cfg");
/** The reference Alpine host: /etc/update-extlinux.conf and /boot/extlinux.conf before and after. */
export const alpineUpdateExtlinuxConf = read("alpine-update-extlinux.conf");
export const alpineExtlinuxConf = read("alpine-extlinux.conf");
export const alpineExtlinuxConfWithVfio = read("alpine-extlinux-vfio.conf");
/** The Alpine lab VM, which starts with intel_iommu=off. */
export const labUpdateExtlinuxConf = read("lab-update-extlinux.conf");
