import { readFileSync } from "fs";
import { join } from "path";
import { KernelModules, parseModulesBuiltin } from "../../../providers/kernel/modules";
import type { InterruptRemapping } from "../../../providers/kernel/preflight";
import { HostFacts, parseIommuGroups, parseLspci, parseUsbDevices, withIommuGroups } from "../../../providers/vfioBinding/hostFacts";
import { debianKernel } from "../initramfsModules/fixtures";

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

/**
 * Interrupt remapping as kernel/preflight.ts finds it: the lab's QEMU intel-iommu is started with
 * intremap=on (scripts/lab/lab.sh); the reference host's Q45 chipset VT-d cannot remap interrupts,
 * which is why its stack sets allowUnsafeInterrupts.
 */
export const remappingOn: InterruptRemapping = { state: "on", detail: "14 interrupt chips in /proc/interrupts are IR- (remapped)" };
export const remappingOff: InterruptRemapping = { state: "off", detail: "dmar0 (ecap 1000) cannot remap interrupts (bit 3 of the extended capabilities is clear)" };

/** The lab before its first reboot: intel_iommu=off is still in effect, so no groups. */
export const labFactsBeforeReboot = (iommuEnabledAtNextBoot: boolean): HostFacts => ({
  ...labFacts,
  pciDevices: parseLspci(labLspci),
  iommuEnabledAtNextBoot,
});

/**
 * Debian 12's kernel built with CONFIG_VFIO=y, CONFIG_VFIO_PCI=y and CONFIG_VFIO_IOMMU_TYPE1=y, as
 * Ubuntu 20.04 ships its kernel: the fixture is Debian's modules.builtin
 * (initramfsModules/fixtures/debian12-modules.builtin) plus the VFIO lines of Ubuntu 20.04's, as
 * `grep vfio /lib/modules/5.4.0-126-generic/modules.builtin` prints them (kernel/drivers/vfio/vfio.ko,
 * vfio_virqfd.ko, vfio_iommu_type1.ko, pci/vfio-pci.ko; quoted in github.com/ARD92/ard92.github.io,
 * _posts/2022-10-7-JCNR-with-vrouter.md), and pci/vfio-pci-core.ko, which 6.1 splits out of vfio-pci
 * and builds in with it (drivers/vfio/pci/Kconfig: VFIO_PCI selects VFIO_PCI_CORE). What is built in
 * is no longer a file in modules.dep.
 */
const vfioBuiltin = parseModulesBuiltin(read("debian12-vfio-builtin-modules.builtin"));
export const vfioBuiltInKernel: KernelModules = {
  release: debianKernel.release,
  loadable: Object.fromEntries(Object.entries(debianKernel.loadable).filter(([name]) => vfioBuiltin[name] === undefined)),
  builtin: vfioBuiltin,
};

/** The VfioBinding inputs a selection does not set, as VfioBindingInputs fills them in. */
export const vfioSelectionDefaults = {
  devices: [],
  iommuGroups: [],
  usbDevices: [],
  acknowledgeGroupMembers: [],
  allowHostCritical: [],
  acknowledgeUnresolvedHostDevices: [],
  bindBy: "ids",
  allowUnsafeInterrupts: false,
};
