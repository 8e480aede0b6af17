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
  rootFilesystemControllers: ["0000:00:1f.2"],
  sshNicAddresses: ["0000:00:19.0"],
  iommuEnabledAtNextBoot: true,
};

/** The QEMU q35 lab VM with intel-iommu, after the reboot: ICH9 USB in group 4, / on virtio-blk, SSH on virtio-net. */
export const labFacts: HostFacts = {
  pciDevices: withIommuGroups(parseLspci(labLspci), parseIommuGroups(labGroups)),
  usbDevices: parseUsbDevices(labUsb),
  rootFilesystemControllers: ["0000:00:03.0"],
  sshNicAddresses: ["0000:00:02.0"],
  iommuEnabledAtNextBoot: true,
};

/** The lab before its first reboot: intel_iommu=off is still in effect, so no groups. */
export const labFactsBeforeReboot = (iommuEnabledAtNextBoot: boolean): HostFacts => ({
  ...labFacts,
  pciDevices: parseLspci(labLspci),
  iommuEnabledAtNextBoot,
});
