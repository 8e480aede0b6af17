import fc from "fast-check";
import { desiredDomain, diffDomain, observedDomain } from "../../../providers/libvirt/domainDiff";
import { domainSpecSchema, type DomainSpec } from "../../../providers/libvirt/domainSpec";
import { parseDomainXml, renderDomainXml, type DomainDefinition, type DomainHostFacts } from "../../../providers/libvirt/domainXml";
import { find, findAll, parseXml, textOf, type XmlElement } from "../../../providers/text/xml";
import { domainCase } from "./domainArbitraries";
import { homeAssistantInputs, inactiveFixture, referenceFacts } from "./referenceHost";

const homeAssistant = domainSpecSchema.parse(homeAssistantInputs);
const render = (spec: DomainSpec, facts: DomainHostFacts = referenceFacts) => parseXml(renderDomainXml(spec, facts));
const attrs = (root: XmlElement, path: string) => findAll(root, path).map((e) => e.attributes);
const texts = (root: XmlElement, path: string) => findAll(root, path).map((e) => textOf(e));

describe("renderDomainXml", () => {
  const root = render(homeAssistant);

  it("names and describes the domain, with the libosinfo id of osVariant", () => {
    expect(root.attributes).toEqual({ type: "kvm" });
    expect(texts(root, "name")).toEqual(["homeassistant"]);
    expect(texts(root, "description")).toEqual(["Home Assistant OS"]);
    expect(findAll(root, "uuid")).toEqual([]);
    const osinfo = find(root, "metadata/libosinfo:libosinfo");
    expect(osinfo?.attributes).toEqual({ "xmlns:libosinfo": "http://libosinfo.org/xmlns/libvirt/domain/1.0" });
    expect(attrs(osinfo!, "libosinfo:os")).toEqual([{ id: "http://libosinfo.org/linux/2022" }]);
  });

  it("gives all memory up front, with the declared vCPUs and the host CPU", () => {
    expect(attrs(root, "memory")).toEqual([{ unit: "MiB" }]);
    expect(texts(root, "memory")).toEqual(["4096"]);
    expect(texts(root, "currentMemory")).toEqual(["4096"]);
    expect(texts(root, "vcpu")).toEqual(["2"]);
    expect(attrs(root, "cpu")).toEqual([{ mode: "host-passthrough" }]);
  });

  it("boots UEFI on q35 with secure boot off, the host's SMBIOS and ACPI", () => {
    expect(attrs(root, "os")).toEqual([{ firmware: "efi" }]);
    expect(attrs(root, "os/type")).toEqual([{ arch: "x86_64", machine: "q35" }]);
    expect(texts(root, "os/type")).toEqual(["hvm"]);
    expect(attrs(root, "os/firmware/feature")).toEqual([
      { enabled: "no", name: "secure-boot" },
      { enabled: "no", name: "enrolled-keys" },
    ]);
    expect(findAll(root, "os/loader")).toEqual([]);
    expect(attrs(root, "os/smbios")).toEqual([{ mode: "host" }]);
    expect(find(root, "features")?.children.map((c) => (c as XmlElement).name)).toEqual(["acpi", "apic"]);
  });

  it("attaches the resolved volume as a virtio qcow2 disk", () => {
    const disk = find(root, "devices/disk")!;
    expect(disk.attributes).toEqual({ type: "file", device: "disk" });
    expect(attrs(disk, "driver")).toEqual([{ name: "qemu", type: "qcow2" }]);
    expect(attrs(disk, "source")).toEqual([{ file: "/var/lib/libvirt/images/haos_ova-7.5.qcow2" }]);
    expect(attrs(disk, "target")).toEqual([{ dev: "vda", bus: "virtio" }]);
  });

  it("bridges the NIC with its MAC in lower case and a virtio model", () => {
    const nic = find(root, "devices/interface")!;
    expect(nic.attributes).toEqual({ type: "bridge" });
    expect(attrs(nic, "mac")).toEqual([{ address: "52:54:00:c4:2d:4a" }]);
    expect(attrs(nic, "source")).toEqual([{ bridge: "br0" }]);
    expect(attrs(nic, "model")).toEqual([{ type: "virtio" }]);
  });

  it("passes the PCI devices through, managed by libvirt", () => {
    expect(attrs(root, "devices/hostdev")).toEqual([
      { mode: "subsystem", type: "pci", managed: "yes" },
      { mode: "subsystem", type: "pci", managed: "yes" },
    ]);
    expect(attrs(root, "devices/hostdev/source/address")).toEqual([
      { domain: "0x0000", bus: "0x00", slot: "0x1a", function: "0x0" },
      { domain: "0x0000", bus: "0x00", slot: "0x1a", function: "0x1" },
    ]);
  });

  it("is headless: no graphics, video, sound or input, no balloon, a serial console", () => {
    for (const device of ["graphics", "video", "sound", "input"]) expect(findAll(root, `devices/${device}`)).toEqual([]);
    expect(attrs(root, "devices/memballoon")).toEqual([{ model: "none" }]);
    expect(attrs(root, "devices/serial")).toEqual([{ type: "pty" }]);
    expect(attrs(root, "devices/console/target")).toEqual([{ type: "serial", port: "0" }]);
  });

  it("runs under TCG (type qemu) on a host without /dev/kvm", () => {
    expect(render(homeAssistant, { ...referenceFacts, kvm: false }).attributes).toEqual({ type: "qemu" });
  });

  it("names OVMF itself when the host's libvirt cannot select firmware", () => {
    const explicit = render(homeAssistant, { ...referenceFacts, firmware: { loader: "/usr/share/OVMF/OVMF_CODE.fd", nvramTemplate: "/usr/share/OVMF/OVMF_VARS.fd" } });
    expect(attrs(explicit, "os")).toEqual([{}]);
    expect(attrs(explicit, "os/loader")).toEqual([{ readonly: "yes", type: "pflash" }]);
    expect(texts(explicit, "os/loader")).toEqual(["/usr/share/OVMF/OVMF_CODE.fd"]);
    expect(attrs(explicit, "os/nvram")).toEqual([{ template: "/usr/share/OVMF/OVMF_VARS.fd" }]);
    expect(findAll(explicit, "os/firmware")).toEqual([]);
  });

  it("boots SeaBIOS for boot: bios", () => {
    const bios = render({ ...homeAssistant, boot: "bios" });
    expect(attrs(bios, "os")).toEqual([{}]);
    expect(findAll(bios, "os/loader")).toEqual([]);
  });

  it("names SATA and SCSI disks in one sd namespace and adds a virtio-scsi controller", () => {
    const volumes = ["a", "b", "c", "d"].map((name) => ({ pool: "default", name, path: `/images/${name}`, format: "raw" }));
    const spec: DomainSpec = {
      ...homeAssistant,
      disks: [
        { pool: "default", volume: "a", bus: "sata" },
        { pool: "default", volume: "b", bus: "virtio" },
        { pool: "default", volume: "c", bus: "scsi" },
        { pool: "default", volume: "d", bus: "virtio" },
      ],
    };
    const root = render(spec, { ...referenceFacts, volumes });
    expect(attrs(root, "devices/disk/target")).toEqual([
      { dev: "sda", bus: "sata" },
      { dev: "vda", bus: "virtio" },
      { dev: "sdb", bus: "scsi" },
      { dev: "vdb", bus: "virtio" },
    ]);
    expect(attrs(root, "devices/disk/driver").map((d) => d.type)).toEqual(["raw", "raw", "raw", "raw"]);
    expect(attrs(root, "devices/controller")).toEqual([{ type: "scsi", index: "0", model: "virtio-scsi" }]);
  });

  it("keeps the UUID and the MACs libvirt gave an existing domain", () => {
    const spec: DomainSpec = { ...homeAssistant, networks: [{ type: "bridge", bridge: "br0" }, { type: "user" }] };
    const existing = { ...parseDomainXml(inactiveFixture), interfaces: [] as DomainDefinition["interfaces"] };
    const withExisting = (definition: DomainDefinition) => render(spec, { ...referenceFacts, existing: { definition, autostart: true, state: "running" } });
    expect(texts(withExisting(existing), "uuid")).toEqual(["5b7f6c2e-3d8a-4e0b-9a51-2f4c8d9e1a37"]);
    expect(attrs(withExisting(existing), "devices/interface/mac")).toEqual([]);
    const generated = { ...existing, interfaces: [{ type: "bridge", source: "br0", mac: "52:54:00:aa:bb:cc", model: "virtio" }] };
    expect(attrs(withExisting(generated), "devices/interface/mac")).toEqual([{ address: "52:54:00:aa:bb:cc" }]);
  });

  it("escapes what it writes: & < > \" ' in the description and in paths", () => {
    const spec: DomainSpec = { ...homeAssistant, description: `Fish & <Chips> "q" 'a'\nnext` };
    const facts = { ...referenceFacts, volumes: [{ ...referenceFacts.volumes[0], path: `/srv/a&b <c> "d" 'e'/haos.qcow2` }] };
    const xml = renderDomainXml(spec, facts);
    expect(xml).toContain(`<description>Fish &amp; &lt;Chips&gt; "q" 'a'\nnext</description>`);
    expect(xml).toContain(`<source file="/srv/a&amp;b &lt;c&gt; &quot;d&quot; 'e'/haos.qcow2"/>`);
    const parsed = parseDomainXml(xml);
    expect(parsed.description).toBe(spec.description);
    expect(parsed.disks[0].source).toBe(`/srv/a&b <c> "d" 'e'/haos.qcow2`);
  });

  it("refuses a disk whose volume the host does not have, or whose format is not the volume's", () => {
    const spec: DomainSpec = {
      ...homeAssistant,
      disks: [
        { pool: "default", volume: "haos_ova-7.5.qcow2", bus: "virtio", format: "raw" },
        { pool: "images", volume: "data.raw", bus: "virtio" },
      ],
    };
    expect(() => renderDomainXml(spec, referenceFacts)).toThrow(
      "LibvirtDomain homeassistant:\n" +
        '- disks[0].format is "raw" but volume default/haos_ova-7.5.qcow2 is qcow2 (qemu-img info); remove format or write "qcow2"\n' +
        "- disks[1]: there is no volume images/data.raw on the host (volumes found: default/haos_ova-7.5.qcow2); " +
        "declare it as a volume in pool images, or fix disks[1].pool and disks[1].volume",
    );
  });

  it("refuses an osVariant libosinfo does not know, and says how to find one", () => {
    expect(() => renderDomainXml({ ...homeAssistant, osVariant: "haos" }, referenceFacts)).toThrow(
      'LibvirtDomain homeassistant: osVariant "haos" is not known to libosinfo on the host (osinfo-query os); ' +
        'write a short id it lists, such as linux2022, a full id such as http://libosinfo.org/linux/2022, or "generic"',
    );
    expect(() => renderDomainXml(homeAssistant, { ...referenceFacts, osinfoIds: undefined })).toThrow(
      'LibvirtDomain homeassistant: osVariant "linux2022" needs osinfo-query on the host to find its libosinfo id ' +
        '(Debian package libosinfo-bin); install it, or write the full id such as http://libosinfo.org/linux/2022, or "generic"',
    );
    expect(findAll(render({ ...homeAssistant, osVariant: "generic" }), "metadata")).toEqual([]);
  });
});

describe("parseDomainXml", () => {
  it("projects libvirt's inactive XML of the reference guest onto the fields we own", () => {
    expect(parseDomainXml(inactiveFixture)).toEqual({
      name: "homeassistant",
      uuid: "5b7f6c2e-3d8a-4e0b-9a51-2f4c8d9e1a37",
      type: "kvm",
      description: "Home Assistant OS",
      osinfoId: "http://libosinfo.org/linux/2022",
      memoryMiB: 4096,
      vcpus: 2,
      cpuMode: "host-passthrough",
      machine: "q35",
      firmware: "uefi",
      sysinfo: "host",
      disks: [{ device: "disk", source: "/var/lib/libvirt/images/haos_ova-7.5.qcow2", bus: "virtio", format: "qcow2" }],
      interfaces: [{ type: "bridge", source: "br0", mac: "52:54:00:c4:2d:4a", model: "virtio" }],
      hostdevs: ["0000:00:1a.0", "0000:00:1a.1"],
      memballoon: "none",
      graphicsVideoSoundInput: [],
    });
  });

  it("shows no difference between that XML and the spec that produced it", () => {
    const existing = { definition: parseDomainXml(inactiveFixture), autostart: true, state: "running" };
    const facts = { ...referenceFacts, existing };
    expect(diffDomain(desiredDomain(homeAssistant, facts).projection, observedDomain(existing))).toEqual([]);
  });

  it("sees secure-boot firmware, a graphical console and a tablet that `virsh edit` added", () => {
    const edited = inactiveFixture
      .replace("<loader readonly='yes' type='pflash'>", "<loader readonly='yes' secure='yes' type='pflash'>")
      .replace("<memballoon model='none'/>", "<graphics type='vnc' port='-1'/><video><model type='vga'/></video><input type='tablet' bus='usb'/><memballoon model='virtio'/>");
    const parsed = parseDomainXml(edited);
    expect(parsed.firmware).toBe("uefi-secure-boot");
    expect(parsed.graphicsVideoSoundInput).toEqual(["graphics vnc", "video vga", "input tablet usb"]);
    expect(parsed.memballoon).toBe("virtio");
  });

  it("reads other units, <vcpu current>, i440fx, volume disks and USB host devices", () => {
    const parsed = parseDomainXml(`<domain type='qemu'><name>x</name><memory unit='GiB'>2</memory><vcpu current='1'>4</vcpu>
      <os><type machine='pc-i440fx-8.2'>hvm</type></os><devices>
      <disk type='volume' device='cdrom'><source pool='iso' volume='debian.iso'/><target dev='sda' bus='sata'/></disk>
      <hostdev mode='subsystem' type='usb'><source><vendor id='0x1a86'/><product id='0x7523'/></source></hostdev>
      <video><model type='none'/></video></devices></domain>`);
    expect(parsed).toMatchObject({
      memoryMiB: 2048,
      vcpus: 1,
      machine: "pc",
      firmware: "bios",
      cpuMode: null,
      uuid: null,
      disks: [{ device: "cdrom", source: "iso/debian.iso", bus: "sata", format: null }],
      hostdevs: ["usb 0x1a86:0x7523"],
      graphicsVideoSoundInput: [],
    });
  });

  it("round-trips: parse(render(spec)) projects back to the spec, whatever it holds", () => {
    fc.assert(
      fc.property(domainCase, ({ inputs, facts }) => {
        const spec = domainSpecSchema.parse(inputs);
        const volumeOf = (volume: string) => facts.volumes.find((v) => v.name === volume)!;
        expect(parseDomainXml(renderDomainXml(spec, facts))).toEqual({
          name: spec.name,
          uuid: null,
          type: facts.kvm ? "kvm" : "qemu",
          description: spec.description,
          osinfoId: spec.osVariant === "generic" ? null : spec.osVariant === "linux2022" ? "http://libosinfo.org/linux/2022" : spec.osVariant,
          memoryMiB: spec.memoryMiB,
          vcpus: spec.vcpus,
          cpuMode: spec.cpu,
          machine: "q35",
          firmware: spec.boot === "uefi" ? "uefi" : "bios",
          sysinfo: spec.sysinfoHost ? "host" : null,
          disks: spec.disks.map((d) => ({ device: "disk", source: volumeOf(d.volume).path, bus: d.bus, format: volumeOf(d.volume).format })),
          interfaces: spec.networks.map((n) => ({
            type: n.type,
            source: n.type === "bridge" ? n.bridge : n.type === "network" ? n.network : null,
            mac: n.mac ?? null,
            model: "virtio",
          })),
          hostdevs: [...spec.hostdevs].sort(),
          memballoon: "none",
          graphicsVideoSoundInput: [],
        });
      }),
    );
  });
});
