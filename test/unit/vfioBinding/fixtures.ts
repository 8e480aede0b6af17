import { readFileSync } from "fs";
import { join } from "path";
import { HostFacts, parseIommuGroups, parseLspci, parseUsbDevices, withIommuGroups } from "../../../providers/vfioBinding/hostFacts";

const read = (name: string) => readFileSync(join(__dirname, "fixtures", name), "utf8");

export const referenceLspci = read("reference-lspci-nnk.txt");
export const referenceGroups = read("reference-iommu-groups.txt");
export const referenceUsb = read("reference-usb.txt");
export const labLspci = read("lab-lspci-nnk.txt");
export const labGroups = read("lab-iommu-groups.txt");
export const labUsb = read("lab-usb.txt");

/**
 * The reference Alpine host (Q45/ICH10 desktop, IOMMU on): the four ICH10 USB controllers the
 * project was born for share IOMMU group 4; / is on the AHCI controller, SSH comes in on the 82567LM.
 */
export const referenceFacts: HostFacts = {
  pciDevices: withIommuGroups(parseLspci(referenceLspci), parseIommuGroups(referenceGroups)),
  usbDevices: parseUsbDevices(referenceUsb),
  hostNeeds: [
    { kind: "mount", name: "/", what: "/ on ext4 /dev/sda3", controllers: ["0000:00:1f.2"], unresolved: [] },
    { kind: "ssh", name: "ssh", what: "the SSH session from 192.168.1.20", controllers: ["0000:00:19.0"], unresolved: [] },
  ],
  iommuEnabledAtNextBoot: true,
};

/** The QEMU q35 lab VM with intel-iommu, after the reboot: ICH9 USB in group 4, / on virtio-blk, SSH on virtio-net. */
export const labFacts: HostFacts = {
  pciDevices: withIommuGroups(parseLspci(labLspci), parseIommuGroups(labGroups)),
  usbDevices: parseUsbDevices(labUsb),
  hostNeeds: [
    { kind: "mount", name: "/", what: "/ on ext4 /dev/vda1", controllers: ["0000:00:03.0"], unresolved: [] },
    { kind: "ssh", name: "ssh", what: "the SSH session from 10.0.2.2", controllers: ["0000:00:02.0"], unresolved: [] },
  ],
  iommuEnabledAtNextBoot: true,
};

/** The lab before its first reboot: intel_iommu=off is still in effect, so no groups. */
export const labFactsBeforeReboot = (iommuEnabledAtNextBoot: boolean): HostFacts => ({
  ...labFacts,
  pciDevices: parseLspci(labLspci),
  iommuEnabledAtNextBoot,
});
