import { VfioBindingInputs } from "../../../providers/vfioBinding/schema";
import { vfioSelectionDefaults } from "./fixtures";

const messages = (input: unknown) => {
  const result = VfioBindingInputs.safeParse(input);
  return result.success ? [] : result.error.issues.map((issue) => issue.message);
};

describe("VfioBindingInputs", () => {
  it("accepts ids and addresses and fills defaults", () => {
    expect(VfioBindingInputs.parse({ devices: ["8086:3a67", "00:1a.7"] })).toEqual({ ...vfioSelectionDefaults, devices: ["8086:3a67", "00:1a.7"] });
  });

  it("rejects malformed ids with an example", () => {
    expect(messages({ devices: ["8086:3a6", "zz:11", 8086] })).toEqual([
      'devices: "8086:3a6" is neither a vendor:device id nor a PCI address; write an id like "8086:3a67" or an address like "0000:00:1a.0"',
      'devices: "zz:11" is neither a vendor:device id nor a PCI address; write an id like "8086:3a67" or an address like "0000:00:1a.0"',
      'devices: 8086 is not a string; write an id like "8086:3a67" or an address like "0000:00:1a.0"',
    ]);
  });

  it("rejects malformed USB ids, group numbers and addresses", () => {
    expect(messages({ usbDevices: ["046d:c52"], iommuGroups: [-1, 2.5, "4"], acknowledgeGroupMembers: ["00:1d"], allowHostCritical: ["1f.2"] })).toEqual([
      "iommuGroups: -1 is not an IOMMU group number; write the number of a directory in /sys/kernel/iommu_groups, like 4",
      "iommuGroups: 2.5 is not an IOMMU group number; write the number of a directory in /sys/kernel/iommu_groups, like 4",
      'iommuGroups: "4" is not an IOMMU group number; write the number of a directory in /sys/kernel/iommu_groups, like 4',
      'usbDevices: "046d:c52" is not a USB vendor:product id; write 4 hex digits on each side, like "046d:c52b"',
      'acknowledgeGroupMembers: "00:1d" is not a PCI address; write it as `lspci -D` does, like "0000:00:1d.7"',
      'allowHostCritical: "1f.2" is not a PCI address; write it as `lspci -D` does, like "0000:00:1d.7"',
    ]);
  });

  it("rejects a bad bindBy, a non-boolean allowUnsafeInterrupts and unknown keys", () => {
    expect(messages({ devices: ["8086:3a67"], bindBy: "driver_override", allowUnsafeInterrupts: "yes", device: [] })).toEqual([
      'bindBy: "driver_override" must be "ids" or "address"',
      'allowUnsafeInterrupts: "yes" must be true or false',
      "Unknown VfioBinding input `device`; the inputs are devices, iommuGroups, usbDevices, acknowledgeGroupMembers, allowHostCritical, acknowledgeUnresolvedHostDevices, bindBy and allowUnsafeInterrupts",
    ]);
  });

  it("takes what a refusal names as an acknowledgement of an untraced host need, and nothing else", () => {
    const acknowledged = ["/", "/boot/efi", "swap:/dev/zd0", "crypttab:cryptdata", "ssh"];
    expect(VfioBindingInputs.parse({ devices: ["8086:3a67"], acknowledgeUnresolvedHostDevices: acknowledged }).acknowledgeUnresolvedHostDevices).toEqual(acknowledged);
    expect(messages({ devices: ["8086:3a67"], acknowledgeUnresolvedHostDevices: ["boot/efi", "SSH", 1] })).toEqual([
      'acknowledgeUnresolvedHostDevices: "boot/efi" names nothing the host needs; write a mount point ("/boot/efi"), "swap:<area>" ("swap:/dev/sda2"), "crypttab:<name>" ("crypttab:cryptdata") or "ssh", as the refusal names it',
      'acknowledgeUnresolvedHostDevices: "SSH" names nothing the host needs; write a mount point ("/boot/efi"), "swap:<area>" ("swap:/dev/sda2"), "crypttab:<name>" ("crypttab:cryptdata") or "ssh", as the refusal names it',
      'acknowledgeUnresolvedHostDevices: 1 is not a string; write what the refusal names, like "/boot/efi" or "ssh"',
    ]);
  });

  it("rejects an empty selection and a device both selected and acknowledged", () => {
    expect(messages({})).toEqual(['Nothing is selected: `devices`, `iommuGroups` and `usbDevices` are all empty; add e.g. devices: ["8086:3a67"]']);
    expect(messages({ devices: ["00:1d.7"], acknowledgeGroupMembers: ["0000:00:1d.7"] })).toEqual([
      'acknowledgeGroupMembers: "0000:00:1d.7" is also in `devices`; a device is either passed through or left to the host, so drop it from one of them',
    ]);
  });
});
