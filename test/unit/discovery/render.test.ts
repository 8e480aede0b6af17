import fc from "fast-check";
import { buildHostDiscovery, HostDiscovery } from "../../../providers/discovery/inventory";
import { iommuOffAdvice, renderGroupConfig, renderIommuGroups, renderPreflight, renderUsbTable, suggestedGroup } from "../../../providers/discovery/render";
import { parseVfioHostSections } from "../../../providers/vfioBinding/readFacts";
import { labSections, referenceSections } from "./fixtures";

const discover = (host: string, sections: typeof labSections): HostDiscovery => buildHostDiscovery(host, parseVfioHostSections(sections, host));
const reference = discover("root@192.0.2.10:22", referenceSections);
const lab = discover("root@127.0.0.1:2222", labSections);
/** The lab before its first reboot with the IOMMU on: no groups, intel_iommu not on the command line. */
const labBeforeReboot = discover("root@127.0.0.1:2222", { ...labSections, iommuGroups: "", cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-17-amd64 ro console=ttyS0\n" });

const block = (text: string, heading: string) => {
  const lines = text.split("\n");
  const start = lines.indexOf(heading);
  const end = lines.findIndex((line, i) => i > start && !line.startsWith("  "));
  return lines.slice(start, end).join("\n") + "\n";
};

describe("renderIommuGroups", () => {
  it("lists the reference host's group 4: the four ICH10 USB controllers, lspci -nns style with their drivers", () => {
    expect(block(renderIommuGroups(reference), "IOMMU group 4:")).toBe(
      [
        "IOMMU group 4:",
        "  0000:00:1a.0 USB controller [0c03]: Intel Corporation 82801JD/DO (ICH10 Family) USB UHCI Controller #4 [8086:3a67]  driver: uhci_hcd",
        "  0000:00:1a.1 USB controller [0c03]: Intel Corporation 82801JD/DO (ICH10 Family) USB UHCI Controller #5 [8086:3a68]  driver: uhci_hcd",
        "  0000:00:1a.2 USB controller [0c03]: Intel Corporation 82801JD/DO (ICH10 Family) USB UHCI Controller #6 [8086:3a69]  driver: uhci_hcd",
        "  0000:00:1a.7 USB controller [0c03]: Intel Corporation 82801JD/DO (ICH10 Family) USB2 EHCI Controller #2 [8086:3a6c]  driver: ehci-pci",
        "",
      ].join("\n"),
    );
  });

  it("marks what the host cannot lose and shows devices without a driver", () => {
    const text = renderIommuGroups(reference);
    expect(block(text, "IOMMU group 7:")).toContain(
      "  0000:00:1f.2 SATA controller [0106]: Intel Corporation 82801JD/DO (ICH10 Family) SATA AHCI Controller [8086:3a02]  driver: ahci  (holds the host's root filesystem)\n",
    );
    expect(block(text, "IOMMU group 2:")).toContain("[8086:10de]  driver: e1000e  (carries this SSH session)\n");
    expect(block(text, "IOMMU group 6:")).toBe("IOMMU group 6:\n  0000:00:1e.0 PCI bridge [0604]: Intel Corporation 82801 PCI Bridge [8086:244e]  driver: none\n");
  });

  it("lists the lab's ICH9 group", () => {
    expect(block(renderIommuGroups(lab), "IOMMU group 4:")).toBe(
      [
        "IOMMU group 4:",
        "  0000:00:1d.0 USB controller [0c03]: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #1 [8086:2934]  driver: uhci_hcd",
        "  0000:00:1d.1 USB controller [0c03]: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #2 [8086:2935]  driver: uhci_hcd",
        "  0000:00:1d.2 USB controller [0c03]: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #3 [8086:2936]  driver: uhci_hcd",
        "  0000:00:1d.7 USB controller [0c03]: Intel Corporation 82801I (ICH9 Family) USB2 EHCI Controller #1 [8086:293a]  driver: ehci-pci",
        "",
      ].join("\n"),
    );
  });

  it("says first thing that the IOMMU is off and what to do, then lists the devices for selection by id", () => {
    const text = renderIommuGroups(labBeforeReboot);
    expect(text.split("\n").slice(0, 3)).toEqual([
      "The IOMMU is off on root@127.0.0.1:2222: /sys/kernel/iommu_groups is empty, so there are no IOMMU groups and nothing can be passed " +
        'through yet. First apply KernelCmdline with args ["intel_iommu=on", "iommu=pt"] and reboot; then discover again to see the groups.',
      "",
      'Preflight of the CPU and firmware, for kernelArgs ["intel_iommu=on", "iommu=pt"]:',
    ]);
    expect(block(text, "PCI devices (no IOMMU groups yet):")).toContain("[8086:2934]");
    expect(text).not.toContain("IOMMU group 4:");
    expect(text).toContain("  0000:00:1d.7 USB controller [0c03]: Intel Corporation 82801I (ICH9 Family) USB2 EHCI Controller #1 [8086:293a]  driver: ehci-pci\n");
  });
});

describe("iommuOffAdvice", () => {
  it("sends an AMD host to the firmware, since no argument turns its IOMMU on, and never suggests amd_iommu=on", () => {
    expect(iommuOffAdvice({ host: "h", iommuArgs: ["amd_iommu=off"], platform: "amd" })).toBe(
      "The IOMMU is off on h (the running kernel was booted with amd_iommu=off): /sys/kernel/iommu_groups is empty, so there are no IOMMU " +
        "groups and nothing can be passed through yet. On AMD the kernel turns the AMD IOMMU on by itself when the firmware enables it " +
        "(amd_iommu=on is no kernel value), so enable AMD-Vi/IOMMU in the firmware setup, take amd_iommu=off off the kernel command line " +
        "and reboot; then discover again to see the groups.",
    );
    expect(iommuOffAdvice({ host: "h", iommuArgs: [], platform: "unknown" })).toContain(
      'KernelCmdline with args ["intel_iommu=on", "iommu=pt"] (AMD: the kernel turns the AMD IOMMU on by itself when the firmware enables it',
    );
    for (const platform of ["amd", "intel", "unknown"] as const) {
      expect(iommuOffAdvice({ host: "h", iommuArgs: [], platform })).not.toMatch(/"amd_iommu=on"|amd_iommu=on"/);
    }
  });

  it("names the switch that turned it off", () => {
    expect(iommuOffAdvice({ host: "h", iommuArgs: ["intel_iommu=off"], platform: "intel" })).toBe(
      "The IOMMU is off on h (the running kernel was booted with intel_iommu=off): /sys/kernel/iommu_groups is empty, so there are no " +
        'IOMMU groups and nothing can be passed through yet. First apply KernelCmdline with args ["intel_iommu=on", "iommu=pt"] and reboot; ' +
        "then discover again to see the groups.",
    );
  });

  it("points at the firmware when the kernel already asked for the IOMMU", () => {
    const booted = discover("root@127.0.0.1:2222", { ...labSections, iommuGroups: "" });
    expect(booted.iommuArgs).toEqual(["intel_iommu=on", "iommu=pt"]);
    expect(iommuOffAdvice(booted)).toBe(
      "The IOMMU is off on root@127.0.0.1:2222 although the running kernel was booted with intel_iommu=on: /sys/kernel/iommu_groups is empty. " +
        "Turn on VT-d in the firmware setup, then reboot; `dmesg | grep -i -e DMAR -e AMD-Vi` tells why the kernel found none.",
    );
  });
});

describe("renderPreflight", () => {
  it("prints the verdict KernelCmdline and VfioBinding act on: the reference host's VT-d cannot remap interrupts", () => {
    expect(renderPreflight(reference)).toBe(
      [
        'Preflight of the CPU and firmware, for kernelArgs ["intel_iommu=on", "iommu=pt"]:',
        "  refused: Interrupt remapping is off on this host although its IOMMU is on: dmar0 (ecap 1000), dmar1 (ecap 10a0) cannot remap interrupts (bit 3 of the " +
          'extended capabilities is clear). vfio_iommu_type1 then refuses to attach the devices ("No interrupt remapping support"), unless ' +
          "told to accept that a guest can inject interrupts into the host: set vfio-host:vfio.allowUnsafeInterrupts to true to accept it, or " +
          "turn interrupt remapping on (a firmware update or setting; drop intremap=off from the kernel command line)",
        "",
      ].join("\n"),
    );
    expect(renderPreflight(lab)).toBe(
      'Preflight of the CPU and firmware, for kernelArgs ["intel_iommu=on", "iommu=pt"]:\n' +
        '  - Interrupt remapping is on (14 interrupt chips in /proc/interrupts are IR- (remapped))\n',
    );
  });

  it("on an AMD host without IVRS: suggests only iommu=pt and says the firmware is off, before anything is written", () => {
    const amd = discover("root@amd:22", {
      ...labSections,
      iommuGroups: "",
      cpuVendor: "AuthenticAMD\n",
      acpiTables: "ACPI\n",
      iommuUnits: "",
      interruptRemapping: "chips 0\n",
      cmdline: "ro quiet amd_iommu=on\n",
    });
    expect(amd.platform).toBe("amd");
    expect(renderPreflight(amd).split("\n")).toEqual([
      'Preflight of the CPU and firmware, for kernelArgs ["iommu=pt"]:',
      "  refused: AMD-Vi is off in the firmware (no ACPI IVRS table in /sys/firmware/acpi/tables); enable it in the BIOS setup (IOMMU or " +
        "AMD-Vi, often next to SVM) and run again: no value of vfio-host:kernelArgs can turn on an IOMMU the firmware does not describe",
      "  - Interrupt remapping is not known yet: the IOMMU is off now (/sys/class/iommu is empty), so whether it remaps interrupts shows only " +
        "after a boot with it on; it is checked on the first run after that boot",
      "",
    ]);
    expect(renderIommuGroups(amd)).not.toContain("intel_iommu=on");
  });
});

describe("renderUsbTable", () => {
  it("maps each of the reference host's USB buses to its controller, group and devices", () => {
    expect(renderUsbTable(reference)).toBe(
      [
        "Bus  Controller    Id         Driver    IOMMU group  USB devices",
        "  1  0000:00:1a.7  8086:3a6c  ehci-pci            4  0781:5583 Ultra Fit",
        "  2  0000:00:1d.7  8086:3a6a  ehci-pci            5  -",
        "  3  0000:00:1a.0  8086:3a67  uhci_hcd            4  046d:c52b USB Receiver",
        "  4  0000:00:1a.1  8086:3a68  uhci_hcd            4  -",
        "  5  0000:00:1a.2  8086:3a69  uhci_hcd            4  -",
        "  6  0000:00:1d.0  8086:3a64  uhci_hcd            5  413c:2107 Dell USB Entry Keyboard",
        // The fixture lists no bus of these two; every USB controller gets a row all the same.
        "  -  0000:00:1d.1  8086:3a65  uhci_hcd            5  (no bus)",
        "  -  0000:00:1d.2  8086:3a66  uhci_hcd            5  (no bus)",
        "",
      ].join("\n"),
    );
  });

  it("shows the lab's four ICH9 buses in group 4, a dash for the group while the IOMMU is off", () => {
    expect(renderUsbTable(lab)).toBe(
      [
        "Bus  Controller    Id         Driver    IOMMU group  USB devices",
        "  1  0000:00:1d.7  8086:293a  ehci-pci            4  46f4:0001 QEMU USB HARDDRIVE",
        "  2  0000:00:1d.0  8086:2934  uhci_hcd            4  0627:0001 QEMU USB Tablet",
        "  3  0000:00:1d.1  8086:2935  uhci_hcd            4  -",
        "  4  0000:00:1d.2  8086:2936  uhci_hcd            4  -",
        "",
      ].join("\n"),
    );
    expect(renderUsbTable(labBeforeReboot).split("\n")[1]).toBe("  1  0000:00:1d.7  8086:293a  ehci-pci            -  46f4:0001 QEMU USB HARDDRIVE");
  });

  it("shows the controllers vfio-pci holds, which have no bus", () => {
    const bound = {
      ...labSections,
      lspci: labSections.lspci.replace(/Kernel driver in use: (uhci_hcd|ehci-pci)/g, "Kernel driver in use: vfio-pci"),
      usb: "",
    };
    expect(renderUsbTable(discover("h", bound))).toBe(
      [
        "Bus  Controller    Id         Driver    IOMMU group  USB devices",
        "  -  0000:00:1d.0  8086:2934  vfio-pci            4  (no bus: bound to vfio-pci)",
        "  -  0000:00:1d.1  8086:2935  vfio-pci            4  (no bus: bound to vfio-pci)",
        "  -  0000:00:1d.2  8086:2936  vfio-pci            4  (no bus: bound to vfio-pci)",
        "  -  0000:00:1d.7  8086:293a  vfio-pci            4  (no bus: bound to vfio-pci)",
        "",
      ].join("\n"),
    );
    expect(renderUsbTable(discover("h", { ...labSections, lspci: "", pciSysfs: "", usb: "" }))).toBe("No USB controllers on h.\n");
  });

  it("puts each further device of a bus on a line of its own", () => {
    const hub = discover("h", { ...labSections, usb: labSections.usb + "/sys/devices/pci0000:00/0000:00:1d.0/usb2/2-2 046d:c52b USB Receiver\n" });
    expect(renderUsbTable(hub).split("\n").slice(2, 4)).toEqual([
      "  2  0000:00:1d.0  8086:2934  uhci_hcd            4  0627:0001 QEMU USB Tablet",
      "                                                     046d:c52b USB Receiver",
    ]);
  });
});

describe("renderGroupConfig", () => {
  it("selects the reference host's group 4 by vendor:device ids", () => {
    expect(renderGroupConfig(reference, 4)).toBe(
      [
        "config:",
        "  # IOMMU group 4 of root@192.0.2.10:22, whole: vfio-pci takes a group entirely or not at all.",
        "  vfio-host:vfio:",
        "    devices:",
        '      - "8086:3a67" # 0000:00:1a.0 USB controller: Intel Corporation 82801JD/DO (ICH10 Family) USB UHCI Controller #4',
        '      - "8086:3a68" # 0000:00:1a.1 USB controller: Intel Corporation 82801JD/DO (ICH10 Family) USB UHCI Controller #5',
        '      - "8086:3a69" # 0000:00:1a.2 USB controller: Intel Corporation 82801JD/DO (ICH10 Family) USB UHCI Controller #6',
        '      - "8086:3a6c" # 0000:00:1a.7 USB controller: Intel Corporation 82801JD/DO (ICH10 Family) USB2 EHCI Controller #2',
        "",
      ].join("\n"),
    );
  });

  it("selects the lab's ICH9 group", () => {
    expect(renderGroupConfig(lab, 4)).toBe(
      [
        "config:",
        "  # IOMMU group 4 of root@127.0.0.1:2222, whole: vfio-pci takes a group entirely or not at all.",
        "  vfio-host:vfio:",
        "    devices:",
        '      - "8086:2934" # 0000:00:1d.0 USB controller: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #1',
        '      - "8086:2935" # 0000:00:1d.1 USB controller: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #2',
        '      - "8086:2936" # 0000:00:1d.2 USB controller: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #3',
        '      - "8086:293a" # 0000:00:1d.7 USB controller: Intel Corporation 82801I (ICH9 Family) USB2 EHCI Controller #1',
        "",
      ].join("\n"),
    );
  });

  it("uses addresses when a device outside the group shares an id, and says why", () => {
    const twin = {
      ...labSections,
      lspci: labSections.lspci + "00:05.0 USB controller [0c03]: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #1 [8086:2934] (rev 03)\n",
      pciSysfs: labSections.pciSysfs + "0000:00:05.0\n",
      iommuGroups: labSections.iommuGroups + "/sys/kernel/iommu_groups/6/devices/0000:00:05.0\n",
    };
    const text = renderGroupConfig(discover("h", twin), 4);
    expect(text).toContain("  # 8086:2934 is also 0000:00:05.0, outside the group: select by address and bind by address (bindBy: address).\n");
    expect(text).toContain('      - "0000:00:1d.0" # 8086:2934 USB controller: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #1\n');
    expect(text).not.toContain('- "8086:');
  });

  it("warns in the snippet when the group holds what the host needs, and leaves bridges out", () => {
    const text = renderGroupConfig(reference, 7);
    expect(text).toContain(
      "  # WARNING: 0000:00:1f.2 holds the host's root filesystem; the host loses it at the next boot unless it is taken out of this group's selection " +
        "(VfioBinding refuses it without allowHostCritical).\n",
    );
    expect(() => renderGroupConfig(reference, 6)).toThrow(
      "IOMMU group 6 on root@192.0.2.10:22 holds only PCI bridges (0000:00:1e.0), which vfio-pci does not bind",
    );
  });

  it("refuses groups the host does not have, and any group while the IOMMU is off", () => {
    expect(() => renderGroupConfig(reference, 42)).toThrow("root@192.0.2.10:22 has no IOMMU group 42; its groups are 0, 1, 2, 3, 4, 5, 6, 7");
    expect(() => renderGroupConfig(labBeforeReboot, 4)).toThrow(iommuOffAdvice(labBeforeReboot));
  });

  it("names every non-bridge member of any group, however the devices are grouped", () => {
    const addresses = reference.groups.flatMap((g) => g.devices.map((d) => d.address));
    const grouping = fc.array(fc.integer({ min: 0, max: 3 }), { minLength: addresses.length, maxLength: addresses.length });
    fc.assert(
      fc.property(grouping, (groups) => {
        const text = addresses.map((address, i) => `/sys/kernel/iommu_groups/${groups[i]}/devices/${address}`).join("\n");
        const host = discover("h", { ...referenceSections, iommuGroups: text });
        const listing = renderIommuGroups(host);
        for (const address of addresses) expect(listing.split(address).length - 1).toBe(1);
        for (const group of host.groups) {
          const members = group.devices.filter((d) => d.class !== "0604");
          if (members.length === 0) continue;
          const config = renderGroupConfig(host, group.group);
          for (const m of members) expect(config).toContain(m.address);
        }
      }),
    );
  });
});

describe("suggestedGroup", () => {
  it("picks the first group of USB controllers that the host does not need", () => {
    expect(suggestedGroup(reference)).toBe(4);
    expect(suggestedGroup(lab)).toBe(4);
    expect(suggestedGroup(labBeforeReboot)).toBeUndefined();
  });
});
