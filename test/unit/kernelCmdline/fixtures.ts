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
/** Unraid's stock /boot/syslinux/syslinux.cfg. */
export const unraidSyslinuxCfg = read("unraid-syslinux.cfg");
/** Debian 12 with extlinux: a hand-written /boot/extlinux/extlinux.conf; and one u-boot-update generated. */
export const debianExtlinuxConf = read("debian12-extlinux.conf");
export const debianUBootExtlinuxConf = read("debian-u-boot-extlinux.conf");
/** BLS entries: systemd-boot via kernel-install (Debian 12), proxmox-boot-tool, Fedora 40/44, RHEL 8 ($kernelopts). */
export const debianSystemdBootEntry = read("debian12-systemd-boot-entry.conf");
export const proxmoxEntry = read("proxmox-entry.conf");
export const proxmoxKernelCmdline = read("proxmox-kernel-cmdline");
export const fedoraBlsEntry = read("fedora40-bls-entry.conf");
/** The same Fedora 40 host's /etc/default/grub (GRUB_ENABLE_BLSCFG=true). */
export const fedoraDefaultGrub = read("fedora40-default-grub");
export const fedoraTunedBlsEntry = read("fedora44-bls-entry-tuned.conf");
export const rhel8BlsEntry = read("rhel8-bls-entry.conf");
/** `proxmox-boot-tool status`: systemd-boot ESPs (ZFS/UEFI), GRUB ESPs (legacy BIOS), none. */
export const proxmoxStatusUefi = read("proxmox-boot-tool-status-uefi.txt");
export const proxmoxStatusLegacy = read("proxmox-boot-tool-status-legacy.txt");
export const proxmoxStatusUnconfigured = read("proxmox-boot-tool-status-unconfigured.txt");
