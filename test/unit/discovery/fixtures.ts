// What the fact sections print on the two hosts the project is measured against. The PCI, IOMMU
// and USB text is the vfioBinding fixtures' (the same hosts), the module lists the
// initramfsModules fixtures'; the rest is as the sections print it on those hosts.
import { readFileSync } from "fs";
import { join } from "path";
import type { FactSection } from "../../../providers/vfioBinding/readFacts";
import { labGroups, labLspci, labUsb, referenceGroups, referenceLspci, referenceUsb } from "../vfioBinding/fixtures";

const moduleFixture = (name: string) => readFileSync(join(__dirname, "../initramfsModules/fixtures", name), "utf8");
const sysfsNames = (lspci: string) =>
  lspci
    .split("\n")
    .filter((line) => /^\S/.test(line))
    .map((line) => (/^[0-9a-f]{4}:/.test(line) ? "" : "0000:") + line.split(" ")[0])
    .join("\n") + "\n";

/** The hostStorage section of a host with nothing but / (ext4 on partition `partition` of `disk`) and no fstab, swap or crypttab. */
const rootOnly = (device: string, source: string, disk: string, partition: string) =>
  [
    `mountinfo 22 1 ${device} / / rw,relatime - ext4 ${source} rw`,
    `block ${disk.slice(disk.lastIndexOf("/") + 1)} ${disk} whole`,
    `block ${partition} ${disk}/${partition} part`,
    `dev ${device} ${disk}/${partition}`,
    `spec ${source} ${device.split(":").map((n) => Number(n).toString(16)).join(":")}`,
    "",
  ].join("\n");

/** The reference Alpine host (Q45/ICH10): / on the AHCI disk, SSH in over the 82567LM, kernel 5.15 lts. */
export const referenceSections: Record<FactSection, string> = {
  tools: "lspci\nip\n",
  lspci: referenceLspci,
  pciSysfs: sysfsNames(referenceLspci),
  iommuGroups: referenceGroups,
  usb: referenceUsb,
  hostStorage: rootOnly("8:3", "/dev/sda3", "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", "sda3"),
  sshPath: "net lo -\nnet eth0 /sys/devices/pci0000:00/0000:00:19.0\nclient 192.168.1.20\nroute 192.168.1.20 dev eth0 src 192.168.1.5 uid 0\n",
  kernel: "running 5.15.74-0-lts\nnext 5.15.74-0-lts\n",
  modulesDep: moduleFixture("alpine-5.15-modules.dep").split("\n").map((line) => line.split(":")[0]).join("\n"),
  modulesBuiltin: "",
  modprobe:
    "alpine 3.16.2\nmodprobe modprobe: unrecognized option '--version' BusyBox v1.35.0 (2022-08-01 15:14:44 UTC) multi-call binary. \n",
  cmdline: "BOOT_IMAGE=vmlinuz-lts root=UUID=5b6e3f4a-95b1-4b5e-9d4c-2f0a4b6a9d1e modules=sd-mod,usb-storage,ext4 quiet rootfstype=ext4 intel_iommu=on iommu=pt\n",
  bootId: "4f3c1a8e-7d2b-4c55-9a61-0b8e2d7f6c93\n",
  // The Q45's VT-d has no interrupt remapping (its stack sets allowUnsafeInterrupts): no IR- chips,
  // ecap bit 3 clear (the ecap value is chosen for that bit, not copied from the machine).
  cpuVendor: "GenuineIntel\n",
  acpiTables: "ACPI\nDMAR\n",
  iommuUnits: "dmar0 1000\ndmar1 10a0\n",
  interruptRemapping: "chips 0\nreadable\n",
  iommuKernelConfig: "file /boot/config-lts\nCONFIG_INTEL_IOMMU=y\nCONFIG_IRQ_REMAP=y\n",
};

/**
 * The lab VM (Debian 12, q35 with an emulated Intel IOMMU, booted with intel_iommu=on) after a
 * kernel upgrade that has not been booted: SSH arrives through QEMU's user network from 10.0.2.2.
 */
export const labSections: Record<FactSection, string> = {
  tools: "lspci\nip\n",
  lspci: labLspci,
  pciSysfs: sysfsNames(labLspci),
  iommuGroups: labGroups,
  usb: labUsb,
  hostStorage: rootOnly("254:1", "/dev/vda1", "/sys/devices/pci0000:00/0000:00:03.0/virtio1/block/vda", "vda1"),
  sshPath: "net lo -\nnet enp0s2 /sys/devices/pci0000:00/0000:00:02.0/virtio0\nclient 10.0.2.2\nroute 10.0.2.2 dev enp0s2 src 10.0.2.15 uid 0\n",
  kernel: "running 6.1.0-17-amd64\nnext 6.1.0-18-amd64\n",
  modulesDep: moduleFixture("debian12-modules.dep"),
  modulesBuiltin: moduleFixture("debian12-modules.builtin"),
  modprobe: "modprobe kmod version 30 +ZSTD +XZ -ZLIB +LIBCRYPTO -EXPERIMENTAL \n",
  cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-17-amd64 root=UUID=0e4f5c2a-3b1d-4f6e-8a7c-9d0b1e2f3a4b ro console=ttyS0 intel_iommu=on iommu=pt\n",
  bootId: "b7e0c6d2-1f4a-4e8b-9c3d-5a6f7e8d9c0b\n",
  // QEMU's intel-iommu with intremap=on (scripts/lab/lab.sh): remapped chips and the kernel's line
  // (drivers/iommu/intel/irq_remapping.c); the ecap value is chosen for its bit 3.
  cpuVendor: "GenuineIntel\n",
  acpiTables: "ACPI\nDMAR\n",
  iommuUnits: "dmar0 12008c22260286\n",
  interruptRemapping: "chips 14\nreadable\nlog [    0.041000] DMAR-IR: Enabled IRQ remapping in x2apic mode\n",
  iommuKernelConfig: "file /boot/config-6.1.0-18-amd64\nCONFIG_INTEL_IOMMU=y\nCONFIG_IRQ_REMAP=y\n",
};
