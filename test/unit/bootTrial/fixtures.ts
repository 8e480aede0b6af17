import { readFileSync } from "fs";
import { join } from "path";
import { TrialSupportFacts } from "../../../providers/bootTrial/plan";

/**
 * Debian 12 (bookworm) BIOS on the lab, one partition: /boot/grub/grub.cfg as grub-mkconfig writes it,
 * with 00_header's next_entry block, 10_linux's entries for two kernels and 41_custom's custom.cfg source.
 */
export const bookwormGrubCfg = readFileSync(join(__dirname, "fixtures", "bookworm-bios-grub.cfg"), "utf8");
export const BOOKWORM_RELEASE = "6.1.0-57-amd64";

/** Its first entry, exactly as generated (tabs are tabs). */
export const bookwormFirstEntry = [
  "menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple-f1673b93-5073-478e-9a14-f725b5cfe0f2' {",
  "\tload_video",
  "\tinsmod gzio",
  "\tif [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi",
  "\tinsmod part_msdos",
  "\tinsmod ext2",
  "\tsearch --no-floppy --fs-uuid --set=root f1673b93-5073-478e-9a14-f725b5cfe0f2",
  "\techo\t'Loading Linux 6.1.0-57-amd64 ...'",
  "\tlinux\t/boot/vmlinuz-6.1.0-57-amd64 root=UUID=f1673b93-5073-478e-9a14-f725b5cfe0f2 ro  intel_iommu=on iommu=pt console=ttyS0",
  "\techo\t'Loading initial ramdisk ...'",
  "\tinitrd\t/boot/initrd.img-6.1.0-57-amd64",
  "}",
];

/** What readTrialUnsupported reads on that host: grub-probe's output keeps its newline. */
export const bookwormSupportFacts: TrialSupportFacts = {
  grubCfg: bookwormGrubCfg,
  hasDefaultGrub: true,
  grubenvSize: 1024,
  bootFs: "ext2\n",
  bootAbstraction: "\n",
  commands: ["grub-editenv", "grub-mkconfig", "unshare", "mkinitramfs"],
};
