import fc from "fast-check";
import { HostFacts, PciDevice } from "../../../providers/vfioBinding/hostFacts";
import { HostNeed } from "../../../providers/vfioBinding/hostNeeds";
import { GROUPS_DEFERRED, IOMMU_OFF, NOTHING_SELECTED, selectDevices } from "../../../providers/vfioBinding/selectDevices";
import { labFacts, labFactsBeforeReboot, referenceFacts } from "./fixtures";

const errorsOf = (result: ReturnType<typeof selectDevices>) => (result.ok ? [] : result.errors);

describe("selectDevices on the reference host", () => {
  it("selects the four ICH10 USB controllers of group 4 by id", () => {
    const result = selectDevices({ devices: ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"] }, referenceFacts);
    expect(result).toMatchObject({
      ok: true,
      groups: [4],
      ids: ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"],
      addresses: ["0000:00:1a.0", "0000:00:1a.1", "0000:00:1a.2", "0000:00:1a.7"],
      softdepDrivers: ["ehci_pci", "uhci_hcd"],
      groupCheck: "enforced",
      warnings: [],
    });
  });

  it("selects a whole group by number", () => {
    expect(selectDevices({ iommuGroups: [4] }, referenceFacts)).toMatchObject({ ok: true, ids: ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"] });
  });

  it("selects a USB device's controller and the rest of its group, and says so", () => {
    const result = selectDevices({ usbDevices: ["046d:c52b"] }, referenceFacts);
    expect(result).toMatchObject({ ok: true, addresses: ["0000:00:1a.0", "0000:00:1a.1", "0000:00:1a.2", "0000:00:1a.7"] });
    expect(result.warnings).toEqual([
      '`usbDevices` entry "046d:c52b" hangs off 0000:00:1a.0 (8086:3a67), which shares IOMMU group 4 with 0000:00:1a.1 (8086:3a68), 0000:00:1a.2 (8086:3a69) and 0000:00:1a.7 (8086:3a6c); they are passed through too',
    ]);
  });

  it("refuses an id the host does not have, listing the ids closest to it", () => {
    expect(errorsOf(selectDevices({ devices: ["8086:3a6d"] }, referenceFacts))).toEqual([
      '`devices` entry "8086:3a6d" matches no PCI device on the host (it has 8086:3a60, 8086:3a64, 8086:3a65, 8086:3a66, 8086:3a67, 8086:3a68, 8086:3a69, 8086:3a6a, 8086:3a6c, 8086:3a6e); write an id from `lspci -nn`, e.g. "8086:3a60"',
    ]);
  });

  it("lists the vendor's ids, or all, when none is close", () => {
    expect(errorsOf(selectDevices({ devices: ["10ec:8168"] }, referenceFacts))[0]).toMatch(/\(it has 8086:10de, 8086:244e, .*8086:3a6e\); write an id from `lspci -nn`, e.g. "8086:10de"$/);
    expect(errorsOf(selectDevices({ devices: ["8086:1533"] }, labFacts))).toEqual([
      '`devices` entry "8086:1533" matches no PCI device on the host (it has 8086:2918, 8086:2922, 8086:2930, 8086:2934, 8086:2935, 8086:2936, 8086:293a, 8086:29c0); write an id from `lspci -nn`, e.g. "8086:2918"',
    ]);
  });

  it("refuses a PCI bridge", () => {
    expect(errorsOf(selectDevices({ devices: ["00:1e.0"] }, referenceFacts))).toEqual([
      '`devices` entry "00:1e.0" selects 0000:00:1e.0 (8086:244e), a PCI bridge (class 0604); vfio-pci does not bind bridges and a group may keep them, so remove it',
    ]);
    expect(errorsOf(selectDevices({ iommuGroups: [6] }, referenceFacts))).toEqual([
      "`iommuGroups` entry 6 holds only PCI bridges (0000:00:1e.0 (8086:244e)), which vfio-pci does not bind; remove it",
    ]);
  });

  it("refuses the root filesystem's controller and names the way out", () => {
    expect(errorsOf(selectDevices({ iommuGroups: [7] }, referenceFacts))).toEqual([
      '`iommuGroups` entry 7 selects 0000:00:1f.2 (8086:3a02), the controller of the root filesystem; bound to vfio-pci at boot, the host would lose its root filesystem. Remove it from the selection, or add "0000:00:1f.2" to `allowHostCritical` if the host can do without it',
    ]);
  });
});

describe("selectDevices on the lab VM", () => {
  it("refuses a partly selected group, naming the member left out", () => {
    expect(errorsOf(selectDevices({ devices: ["8086:2934", "8086:2935", "8086:2936"] }, labFacts))).toEqual([
      "IOMMU group 4 is only partly selected: 0000:00:1d.7 (8086:293a) is not in `devices`; add it, or acknowledge it in `acknowledgeGroupMembers`",
    ]);
  });

  it("names every member left out", () => {
    expect(errorsOf(selectDevices({ devices: ["0000:00:1d.0"] }, labFacts))).toEqual([
      "IOMMU group 4 is only partly selected: 0000:00:1d.1 (8086:2935), 0000:00:1d.2 (8086:2936) and 0000:00:1d.7 (8086:293a) are not in `devices`; add them, or acknowledge them in `acknowledgeGroupMembers`",
    ]);
  });

  it("accepts acknowledged members, with a warning about group viability", () => {
    const result = selectDevices({ devices: ["8086:2934", "8086:2935", "8086:2936"], acknowledgeGroupMembers: ["00:1d.7"] }, labFacts);
    expect(result).toMatchObject({ ok: true, ids: ["8086:2934", "8086:2935", "8086:2936"], softdepDrivers: ["uhci_hcd"] });
    expect(result.warnings).toEqual([
      "IOMMU group 4: 0000:00:1d.7 (8086:293a) stays with the host as `acknowledgeGroupMembers` says (driver now: ehci-pci); VFIO accepts the group only while that device has no driver or is bound to vfio-pci or pci-stub",
    ]);
  });

  it("refuses an address that is not on the host, listing its slot", () => {
    expect(errorsOf(selectDevices({ devices: ["00:1d.3"] }, labFacts))).toEqual([
      '`devices` entry "00:1d.3" is not a PCI device on the host (slot 0000:00:1d has 0000:00:1d.0, 0000:00:1d.1, 0000:00:1d.2, 0000:00:1d.7); write an address from `lspci -D`, e.g. "0000:00:1d.0"',
    ]);
    expect(errorsOf(selectDevices({ devices: ["8086:2934", "8086:2935", "8086:2936", "8086:293a"], acknowledgeGroupMembers: ["0000:00:05.0"] }, labFacts))).toEqual([
      '`acknowledgeGroupMembers` entry "0000:00:05.0" is not a PCI device on the host (nothing is in slot 0000:00:05); write an address from `lspci -D`, e.g. "0000:00:00.0"',
    ]);
  });

  it("refuses a group number that does not exist", () => {
    expect(errorsOf(selectDevices({ iommuGroups: [12] }, labFacts))).toEqual([
      "`iommuGroups` entry 12 is not an IOMMU group on the host (it has groups 0, 1, 2, 3, 4, 5); write a number from /sys/kernel/iommu_groups, e.g. 0",
    ]);
  });

  it("refuses a USB id the host does not have, and one found on several controllers", () => {
    expect(errorsOf(selectDevices({ usbDevices: ["046d:c52b"] }, labFacts))).toEqual([
      '`usbDevices` entry "046d:c52b" matches no USB device on the host (found 1d6b:0002 (bus 1), 1d6b:0001 (bus 2), 1d6b:0001 (bus 3), 1d6b:0001 (bus 4), 46f4:0001 (bus 1), 0627:0001 (bus 2)); write an id from `lsusb`, e.g. "46f4:0001"',
    ]);
    expect(errorsOf(selectDevices({ usbDevices: ["1d6b:0001"] }, labFacts))).toEqual([
      '`usbDevices` entry "1d6b:0001" matches devices on 3 controllers (bus 2 on 0000:00:1d.0, bus 3 on 0000:00:1d.1, bus 4 on 0000:00:1d.2); put the controller you mean in `devices` instead, e.g. "0000:00:1d.0"',
    ]);
  });

  it("refuses the SSH NIC and the root disk unless `allowHostCritical` lists them", () => {
    expect(errorsOf(selectDevices({ devices: ["1af4:1000", "0000:00:03.0"] }, labFacts))).toEqual([
      '`devices` entry "1af4:1000" selects 0000:00:02.0 (1af4:1000), the NIC carrying this SSH session; bound to vfio-pci at boot, the host would lose this SSH connection. Remove it from the selection, or add "0000:00:02.0" to `allowHostCritical` if the host can do without it',
      '`devices` entry "0000:00:03.0" selects 0000:00:03.0 (1af4:1001), the controller of the root filesystem; bound to vfio-pci at boot, the host would lose its root filesystem. Remove it from the selection, or add "0000:00:03.0" to `allowHostCritical` if the host can do without it',
    ]);
    const allowed = selectDevices({ devices: ["0000:00:03.0"], allowHostCritical: ["00:03.0"] }, labFacts);
    expect(allowed).toMatchObject({ ok: true, softdepDrivers: ["virtio_pci"] });
    expect(allowed.warnings).toEqual(["0000:00:03.0 (1af4:1001) is the controller of the root filesystem; it is passed through because `allowHostCritical` lists it"]);
  });

  it("refuses an empty selection", () => {
    expect(errorsOf(selectDevices({}, labFacts))).toEqual([NOTHING_SELECTED]);
  });
});

describe("selectDevices before the IOMMU is on", () => {
  it("refuses when the boot configuration does not turn the IOMMU on either", () => {
    expect(errorsOf(selectDevices({ devices: ["8086:2934"] }, labFactsBeforeReboot(false)))).toEqual([IOMMU_OFF]);
    expect(IOMMU_OFF).toBe(
      'The IOMMU is off on this host: /sys/kernel/iommu_groups is empty and the boot configuration does not turn it on, so no device can be passed through. Intel: apply KernelCmdline with args ["intel_iommu=on", "iommu=pt"], reboot, and run again. ' +
        "AMD: the kernel turns the IOMMU on by itself when the firmware enables it (amd_iommu=on is no kernel value), so enable AMD-Vi/IOMMU " +
        "in the firmware setup and take amd_iommu=off off the command line",
    );
  });

  it("defers group checks when the next boot turns it on, and says so", () => {
    const result = selectDevices({ devices: ["8086:2934", "8086:2935"] }, labFactsBeforeReboot(true));
    expect(result).toMatchObject({ ok: true, ids: ["8086:2934", "8086:2935"], groups: [], groupCheck: "deferred", warnings: [GROUPS_DEFERRED] });
    expect(GROUPS_DEFERRED).toBe(
      "IOMMU groups are unknown until the host boots with the IOMMU on (its boot configuration already turns it on): devices were checked by id and address only, and group completeness is checked on the first run after the reboot",
    );
  });

  it("still refuses host-critical devices and unknown ids", () => {
    expect(errorsOf(selectDevices({ devices: ["1af4:1000", "8086:2939"] }, labFactsBeforeReboot(true)))).toEqual([
      '`devices` entry "8086:2939" matches no PCI device on the host (it has 8086:2930, 8086:2934, 8086:2935, 8086:2936, 8086:293a); write an id from `lspci -nn`, e.g. "8086:2930"',
      '`devices` entry "1af4:1000" selects 0000:00:02.0 (1af4:1000), the NIC carrying this SSH session; bound to vfio-pci at boot, the host would lose this SSH connection. Remove it from the selection, or add "0000:00:02.0" to `allowHostCritical` if the host can do without it',
    ]);
  });

  it("cannot resolve group numbers yet", () => {
    expect(errorsOf(selectDevices({ iommuGroups: [4] }, labFactsBeforeReboot(true)))).toEqual([
      "`iommuGroups` entry 4 cannot be resolved yet: the host shows no IOMMU groups until it boots with the IOMMU on; select the devices by id or address in `devices` for the first run",
    ]);
  });
});

describe("selectDevices with identical devices", () => {
  const nic = (address: string, iommuGroup: number): PciDevice => ({
    address,
    vendor: "8086",
    device: "10d3",
    class: "0200",
    driver: "e1000e",
    modules: ["e1000e"],
    iommuGroup,
  });
  const twoNics: HostFacts = { ...labFacts, pciDevices: [...labFacts.pciDevices, nic("0000:03:00.0", 10), nic("0000:04:00.0", 11)] };

  it("warns that ids= also binds the twin, and offers bindBy address", () => {
    const result = selectDevices({ devices: ["0000:04:00.0"] }, twoNics);
    expect(result).toMatchObject({ ok: true, addresses: ["0000:03:00.0", "0000:04:00.0"], groups: [10, 11] });
    expect(result.warnings).toEqual([
      'ids=8086:10d3 also binds 0000:03:00.0 (8086:10d3), which the selection does not name (vfio-pci claims every device with a listed id); select it too, or set `bindBy: "address"` to bind only the chosen addresses',
    ]);
  });

  it("binds only the chosen address with bindBy address", () => {
    expect(selectDevices({ devices: ["0000:04:00.0"], bindBy: "address" }, twoNics)).toMatchObject({ ok: true, addresses: ["0000:04:00.0"], warnings: [] });
  });

  it("refuses ids= that would catch the SSH NIC", () => {
    expect(errorsOf(selectDevices({ devices: ["0000:04:00.0"] }, { ...twoNics, hostNeeds: [{ kind: "ssh", name: "ssh", what: "the SSH session", controllers: ["0000:03:00.0"], unresolved: [] }] }))).toEqual([
      "vfio-pci's ids=8086:10d3 selects 0000:03:00.0 (8086:10d3), the NIC carrying this SSH session; bound to vfio-pci at boot, the host would lose this SSH connection. Remove it from the selection, or add \"0000:03:00.0\" to `allowHostCritical` if the host can do without it",
    ]);
  });
});

describe("selectDevices with a bridge in the group", () => {
  const gpuBehindRootPort: HostFacts = {
    ...labFacts,
    pciDevices: [
      ...labFacts.pciDevices,
      { address: "0000:00:06.0", vendor: "8086", device: "0151", class: "0604", driver: "pcieport", iommuGroup: 8 },
      { address: "0000:01:00.0", vendor: "10de", device: "1c82", class: "0300", driver: "nouveau", modules: ["nouveau"], iommuGroup: 8 },
      { address: "0000:01:00.1", vendor: "10de", device: "0fb9", class: "0403", driver: "snd_hda_intel", modules: ["snd_hda_intel"], iommuGroup: 8 },
    ],
  };

  it("leaves the root port out without complaint", () => {
    expect(selectDevices({ devices: ["10de:1c82", "10de:0fb9"] }, gpuBehindRootPort)).toMatchObject({
      ok: true,
      groups: [8],
      addresses: ["0000:01:00.0", "0000:01:00.1"],
      softdepDrivers: ["nouveau", "snd_hda_intel"],
      warnings: [],
    });
  });
});

describe("selectDevices fails closed on what it could not trace", () => {
  const group4 = { devices: ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"] };
  const needing = (...extra: HostNeed[]): HostFacts => ({ ...referenceFacts, hostNeeds: [...referenceFacts.hostNeeds, ...extra] });
  const untraced = (kind: HostNeed["kind"], name: string, what: string, reason: string, controllers: string[] = []): HostNeed => ({
    kind,
    name,
    what,
    controllers,
    unresolved: [reason],
  });
  const zfsRoot = untraced("mount", "/", "/ on zfs rpool/ROOT/debian", "`zpool` is not installed, so the vdevs of pool rpool are unknown");
  const nfsEfi = untraced("mount", "/boot/efi", "/boot/efi on nfs server:/export", "it is on the network (nfs)");
  const zvolSwap = untraced("swap", "swap:/dev/zd0", "swap on /dev/zd0", "/dev/zd0 is not on PCI (/sys/devices/virtual/block/zd0)");
  const goneVolume = untraced("crypttab", "crypttab:cryptdata", "crypttab's cryptdata on UUID=3f1c", "UUID=3f1c is not a block device on the host");
  const overWg = untraced(
    "ssh",
    "ssh",
    "the SSH session from 10.8.0.2",
    "it arrives on wg0, which has no PCI device beneath it and whose peer endpoint is unknown (`wg` is not installed, and `ip -d link show` names no remote)",
  );
  const withoutSsh = (need: HostNeed): HostFacts => ({ ...referenceFacts, hostNeeds: [referenceFacts.hostNeeds[0], need] });

  it("refuses, naming what, why and the entry of acknowledgeUnresolvedHostDevices, for each kind", () => {
    const storage = (need: HostNeed) =>
      `${need.what} cannot be traced to PCI devices: ${need.unresolved[0]}. The host needs it to boot: check by hand that the selection ` +
      `holds none of its disks' controllers, then add "${need.name}" to \`acknowledgeUnresolvedHostDevices\``;
    for (const need of [zfsRoot, nfsEfi, zvolSwap, goneVolume]) {
      expect(errorsOf(selectDevices(group4, needing(need)))).toEqual([storage(need)]);
    }
    expect(errorsOf(selectDevices(group4, withoutSsh(overWg)))).toEqual([
      "the SSH session from 10.8.0.2 cannot be traced to PCI devices: it arrives on wg0, which has no PCI device beneath it and whose peer " +
        "endpoint is unknown (`wg` is not installed, and `ip -d link show` names no remote). The host needs it to stay reachable: check by " +
        'hand that the selection holds none of the devices it travels over, then add "ssh" to `acknowledgeUnresolvedHostDevices`',
    ]);
  });

  it("passes once acknowledged, with a warning that says what was passed over", () => {
    const result = selectDevices({ ...group4, acknowledgeUnresolvedHostDevices: ["/boot/efi", "ssh"] }, { ...withoutSsh(overWg), hostNeeds: [...withoutSsh(overWg).hostNeeds, nfsEfi] });
    expect(result).toMatchObject({ ok: true, addresses: ["0000:00:1a.0", "0000:00:1a.1", "0000:00:1a.2", "0000:00:1a.7"] });
    expect(result.warnings).toEqual([
      "the SSH session from 10.8.0.2 cannot be traced to PCI devices: it arrives on wg0, which has no PCI device beneath it and whose peer " +
        'endpoint is unknown (`wg` is not installed, and `ip -d link show` names no remote); passed over because `acknowledgeUnresolvedHostDevices` lists "ssh"',
      '/boot/efi on nfs server:/export cannot be traced to PCI devices: it is on the network (nfs); passed over because `acknowledgeUnresolvedHostDevices` lists "/boot/efi"',
    ]);
  });

  it("still protects the part it traced of an acknowledged need", () => {
    const halfTraced = untraced("mount", "/", "/ on zfs rpool/ROOT/debian", "vdev /dev/sdq3 of pool rpool is not a block device on the host", ["0000:00:1f.2"]);
    const result = selectDevices({ iommuGroups: [7], acknowledgeUnresolvedHostDevices: ["/"] }, { ...referenceFacts, hostNeeds: [halfTraced] });
    expect(errorsOf(result)).toEqual([
      '`iommuGroups` entry 7 selects 0000:00:1f.2 (8086:3a02), the controller of the root filesystem; bound to vfio-pci at boot, the host would lose its ' +
        'root filesystem. Remove it from the selection, or add "0000:00:1f.2" to `allowHostCritical` if the host can do without it',
    ]);
  });

  it("warns that an acknowledgement of something traced, or of nothing the host needs, has no effect", () => {
    expect(selectDevices({ ...group4, acknowledgeUnresolvedHostDevices: ["ssh", "/srv"] }, referenceFacts)).toMatchObject({
      ok: true,
      warnings: [
        '`acknowledgeUnresolvedHostDevices` lists "ssh", but the SSH session from 192.168.1.20 is traced (0000:00:19.0) and protected; the entry has no effect, remove it',
        '`acknowledgeUnresolvedHostDevices` lists "/srv", which the host does not need (it needs "/" and "ssh"); the entry has no effect, remove it',
      ],
    });
  });

  it("names every storage need a refused controller holds", () => {
    const onAhci = (name: string, what: string, kind: HostNeed["kind"] = "mount"): HostNeed => ({ kind, name, what, controllers: ["0000:00:1f.2"], unresolved: [] });
    const facts = needing(onAhci("/boot/efi", "/boot/efi on vfat /dev/sda1"), onAhci("swap:/dev/sda2", "swap on /dev/sda2", "swap"));
    expect(errorsOf(selectDevices({ devices: ["0000:00:1f.2"], acknowledgeGroupMembers: ["0000:00:1f.0", "0000:00:1f.3"] }, facts))).toEqual([
      '`devices` entry "0000:00:1f.2" selects 0000:00:1f.2 (8086:3a02), the controller of the root filesystem, /boot/efi on vfat /dev/sda1 and swap on ' +
        "/dev/sda2; bound to vfio-pci at boot, the host would lose its root filesystem, /boot/efi on vfat /dev/sda1 and swap on /dev/sda2. Remove it " +
        'from the selection, or add "0000:00:1f.2" to `allowHostCritical` if the host can do without it',
    ]);
  });

  it("never passes while a need it could not trace is not acknowledged", () => {
    const needs = [zfsRoot, nfsEfi, zvolSwap, goneVolume];
    fc.assert(
      fc.property(fc.subarray(needs), fc.subarray(needs.map((n) => n.name)), (present, acknowledged) => {
        const result = selectDevices({ ...group4, acknowledgeUnresolvedHostDevices: acknowledged }, needing(...present));
        expect(result.ok).toBe(present.every((n) => acknowledged.includes(n.name)));
      }),
    );
  });
});

describe("selectDevices properties", () => {
  const group4 = labFacts.pciDevices.filter((d) => d.iommuGroup === 4).map((d) => d.address);

  it("a group passes only when every member is selected or acknowledged", () => {
    fc.assert(
      fc.property(fc.subarray(group4, { minLength: 1 }), fc.subarray(group4), (selected, acknowledged) => {
        const ack = acknowledged.filter((a) => !selected.includes(a));
        const result = selectDevices({ devices: selected, acknowledgeGroupMembers: ack }, labFacts);
        expect(result.ok).toBe(group4.every((a) => selected.includes(a) || ack.includes(a)));
      }),
    );
  });

  it("never passes with a host-critical device not listed in allowHostCritical", () => {
    const all = labFacts.pciDevices.filter((d) => d.class !== "0604").map((d) => d.address);
    fc.assert(
      fc.property(fc.subarray(all, { minLength: 1 }), fc.subarray(["0000:00:02.0", "0000:00:03.0"]), (selected, allowed) => {
        const result = selectDevices({ devices: selected, allowHostCritical: allowed }, labFacts);
        if (result.ok) {
          for (const critical of ["0000:00:02.0", "0000:00:03.0"]) {
            if (result.addresses.includes(critical)) expect(allowed).toContain(critical);
          }
        }
      }),
    );
  });
});
