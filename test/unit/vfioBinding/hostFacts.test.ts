import {
  parseIommuGroups,
  parseLspci,
  parseUsbDevices,
  pciAddressOfSysfsPath,
} from "../../../providers/vfioBinding/hostFacts";
import { labFacts, labLspci, referenceFacts, referenceGroups } from "./fixtures";

describe("parseLspci", () => {
  it("reads lspci -nnk, domain or not, with drivers and modules", () => {
    const devices = parseLspci(labLspci);
    expect(devices).toHaveLength(11);
    expect(devices[4]).toEqual({
      address: "0000:00:1d.0",
      vendor: "8086",
      device: "2934",
      class: "0c03",
      driver: "uhci_hcd",
      modules: ["uhci_hcd"],
      description: "USB controller: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #1",
    });
  });

  it("takes the last [vendor:device] when the name has brackets of its own", () => {
    expect(parseLspci(labLspci).find((d) => d.address === "0000:00:1f.2")).toMatchObject({ vendor: "8086", device: "2922", class: "0106" });
  });

  it("reads a device without driver", () => {
    expect(parseLspci("0000:00:1e.0 PCI bridge [0604]: Intel Corporation 82801 PCI Bridge [8086:244e] (rev a2)\n")).toEqual([
      { address: "0000:00:1e.0", vendor: "8086", device: "244e", class: "0604", description: "PCI bridge: Intel Corporation 82801 PCI Bridge" },
    ]);
  });
});

describe("parseIommuGroups", () => {
  it("maps addresses to group numbers", () => {
    const groups = parseIommuGroups(referenceGroups);
    expect(groups.get("0000:00:1a.7")).toBe(4);
    expect(groups.get("0000:00:1f.2")).toBe(7);
    expect(groups.size).toBe(16);
  });

  it("puts the four ICH10 USB controllers of the reference host in group 4", () => {
    expect(referenceFacts.pciDevices.filter((d) => d.iommuGroup === 4).map((d) => `${d.vendor}:${d.device}`)).toEqual([
      "8086:3a67",
      "8086:3a68",
      "8086:3a69",
      "8086:3a6c",
    ]);
  });
});

describe("parseUsbDevices", () => {
  it("finds each USB device's bus and host controller", () => {
    expect(labFacts.usbDevices).toContainEqual({ bus: 2, vendorProduct: "0627:0001", controllerAddress: "0000:00:1d.0", description: "QEMU USB Tablet" });
    expect(parseUsbDevices("/sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0/usb3/3-1 046D:C52B\n")).toEqual([
      { bus: 3, vendorProduct: "046d:c52b", controllerAddress: "0000:02:00.0" },
    ]);
  });
});

describe("pciAddressOfSysfsPath", () => {
  it("finds the controller nearest to a disk or a NIC", () => {
    expect(pciAddressOfSysfsPath("/sys/devices/pci0000:00/0000:00:03.0/virtio1/block/vda")).toBe("0000:00:03.0");
    expect(pciAddressOfSysfsPath("/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1")).toBe("0000:3d:00.0");
    expect(pciAddressOfSysfsPath("/sys/devices/virtual/net/lo")).toBeUndefined();
  });
});
