import { checkInputs } from "../../../providers/check";
import { domainSpecSchema, type DomainInputs } from "../../../providers/libvirt/domainSpec";
import { homeAssistantInputs } from "./referenceHost";

function failures(inputs: Record<string, unknown>) {
  return checkInputs(domainSpecSchema, inputs).failures ?? [];
}

describe("LibvirtDomain inputs", () => {
  it("accept the reference host's virt-install line and normalise it", () => {
    const spec = domainSpecSchema.parse(homeAssistantInputs);
    expect(spec.networks).toEqual([{ type: "bridge", bridge: "br0", mac: "52:54:00:c4:2d:4a" }]);
    expect(spec.hostdevs).toEqual(["0000:00:1a.0", "0000:00:1a.1"]);
    expect(spec.adopt).toBe(false);
  });

  it("fill in headless, UEFI, host-passthrough defaults", () => {
    const spec = domainSpecSchema.parse({ name: "vm", vcpus: 1, memoryMiB: 512 });
    expect(spec).toEqual({
      name: "vm",
      description: "",
      adopt: false,
      vcpus: 1,
      cpu: "host-passthrough",
      memoryMiB: 512,
      sysinfoHost: false,
      osVariant: "generic",
      boot: "uefi",
      disks: [],
      networks: [],
      hostdevs: [],
      autostart: true,
      running: true,
      shutdownTimeoutSeconds: 300,
    });
  });

  it.each(["pci_0000_00_1a_0", "0000:00:1a.0", "00:1a.0", "0000:00:1A.0", " 00:1a.0 "])("read the PCI address %j as 0000:00:1a.0", (written) => {
    expect(domainSpecSchema.parse({ ...homeAssistantInputs, hostdevs: [written] }).hostdevs).toEqual(["0000:00:1a.0"]);
  });

  const cases: [string, Partial<DomainInputs> | Record<string, unknown>, string, string][] = [
    [
      "a name libvirt cannot take",
      { name: "home assistant" },
      "name",
      '"home assistant" is not a libvirt name (letters, digits, - _ . and starting with a letter or digit); write for example "homeassistant"',
    ],
    [
      "a name virsh would read as an option",
      { name: "-ha" },
      "name",
      '"-ha" is not a libvirt name (letters, digits, - _ . and starting with a letter or digit); write for example "homeassistant"',
    ],
    [
      "a multicast MAC",
      { networks: [{ type: "bridge", bridge: "br0", mac: "01:00:5E:00:00:01" }] },
      "networks.0.mac",
      '"01:00:5e:00:00:01" is a multicast address (the first octet is odd); write a unicast one such as 52:54:00:c4:2d:4a',
    ],
    [
      "a short MAC",
      { networks: [{ type: "bridge", bridge: "br0", mac: "52:54:00:c4:2d" }] },
      "networks.0.mac",
      '"52:54:00:c4:2d" is not a MAC address (six hex pairs separated by colons); write for example 52:54:00:c4:2d:4a',
    ],
    [
      "an interface type libvirt has but we do not",
      { networks: [{ type: "macvtap", dev: "eth0" }] },
      "networks.0.type",
      '"macvtap" is not an interface type; give type "bridge" (with bridge), "network" (with network) or "user", for example { type: "bridge", bridge: "br0", mac: "52:54:00:c4:2d:4a" }',
    ],
    [
      "a bridge name longer than Linux allows",
      { networks: [{ type: "bridge", bridge: "bridge-to-the-lan" }] },
      "networks.0.bridge",
      '"bridge-to-the-lan" is not a bridge interface name (at most 15 letters, digits, - _ .); write for example "br0"',
    ],
    [
      "a PCI address without a function",
      { hostdevs: ["00:1a"] },
      "hostdevs.0",
      '"00:1a" is not a PCI address; write 0000:00:1a.0 (lspci -D), 00:1a.0 (lspci) or pci_0000_00_1a_0 (virsh nodedev-list --cap pci)',
    ],
    [
      "the same device in two spellings",
      { hostdevs: ["pci_0000_00_1a_0", "00:1a.0"] },
      "hostdevs.1",
      '"0000:00:1a.0" is already in hostdevs[0]; a device can be passed through once',
    ],
    [
      "one MAC on two interfaces",
      { networks: [{ type: "bridge", bridge: "br0", mac: "52:54:00:c4:2d:4a" }, { type: "user", mac: "52:54:00:C4:2D:4A" }] },
      "networks.1.mac",
      '"52:54:00:c4:2d:4a" is already in networks[0]; each interface needs its own MAC address',
    ],
    [
      "graphics other than none",
      { graphics: "vnc" },
      "graphics",
      '"vnc" is not supported: guests are headless (graphics is always none; use the serial console, virsh console NAME); remove the key or write "none"',
    ],
    [
      "a disk bus we do not render",
      { disks: [{ pool: "default", volume: "haos.qcow2", bus: "ide" }] },
      "disks.0.bus",
      '"ide" is not a disk bus: "virtio", "sata" or "scsi"; write for example "virtio"',
    ],
    [
      "one volume attached twice",
      { disks: [{ pool: "default", volume: "haos.qcow2" }, { pool: "default", volume: "haos.qcow2", bus: "sata" }] },
      "disks.1",
      '"default/haos.qcow2" is already in disks[0]; attach each volume once',
    ],
    ["no vCPU", { vcpus: 0 }, "vcpus", '0 is not a whole number of virtual CPUs, at least 1; write for example 2'],
    ["memory as a string", { memoryMiB: "4G" }, "memoryMiB", '"4G" is not a whole number of MiB, at least 1; write for example 4096'],
    [
      "a virt-install option name",
      { ram: 4096 },
      "(inputs)",
      "unknown key ram; the keys are name, description, adopt, vcpus, cpu, memoryMiB, sysinfoHost, osVariant, boot, disks, networks, hostdevs, graphics, video, sound, input, memballoon, autostart, running, shutdownTimeoutSeconds",
    ],
    [
      "virt-install's cpu spelling",
      { cpu: "host" },
      "cpu",
      '"host" is not a CPU mode: "host-passthrough" or "host-model"; write for example "host-passthrough"',
    ],
    [
      "a control character in the description",
      { description: "Home\u0007Assistant" },
      "description",
      '"Home\\u0007Assistant" contains a control character XML cannot carry; write plain text such as "Home Assistant OS"',
    ],
  ];

  it.each(cases)("refuse %s, naming the key, the value and an example", (_what, change, property, reason) => {
    expect(failures({ ...homeAssistantInputs, ...change })).toEqual([{ property, reason }]);
  });

  it("say what is missing and what to write", () => {
    const { name: _name, ...withoutName } = homeAssistantInputs;
    expect(failures(withoutName)).toEqual([
      {
        property: "name",
        reason: 'is missing: give a libvirt name (letters, digits, - _ . and starting with a letter or digit), for example "homeassistant"',
      },
    ]);
  });
});
