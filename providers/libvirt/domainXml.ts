import { normalizePciAddress } from "../kernel/pci";
import { element, find, findAll, parseXml, renderXml, textOf, type XmlElement } from "../text/xml";
import type { DomainDiskSpec, DomainSpec } from "./domainSpec";

// The domain XML we define, and the projection of a domain XML onto the fields we own.
// Reference: https://libvirt.org/formatdomain.html

/** A volume as the host has it (`virsh vol-path`, and the format from `qemu-img info`). */
export interface ResolvedVolume {
  readonly pool: string;
  readonly name: string;
  readonly path: string;
  readonly format: string;
}

/** A domain of the same name that is already defined on the host. */
export interface ExistingDomain {
  /** parseDomainXml of `virsh dumpxml --inactive NAME`. */
  readonly definition: DomainDefinition;
  /** `virsh dominfo NAME`: "Autostart: enable". */
  readonly autostart: boolean;
  /** `virsh domstate NAME`: "running", "shut off", "paused", ... */
  readonly state: string;
}

export interface DomainHostFacts {
  /** /dev/kvm is usable; without it the guest runs under TCG (type "qemu"). */
  readonly kvm: boolean;
  readonly volumes: readonly ResolvedVolume[];
  /**
   * OVMF code and variable-template paths, for a libvirt too old for firmware autoselection
   * (domcapabilities without <enum name='firmware'>). Absent: libvirt picks the firmware.
   */
  readonly firmware?: { readonly loader: string; readonly nvramTemplate: string };
  /** Short id to libosinfo id, from `osinfo-query os --fields=short-id,id` (parseOsinfoQuery). */
  readonly osinfoIds?: Readonly<Record<string, string>>;
  readonly existing?: ExistingDomain;
}

export interface DiskDefinition {
  /** "disk", "cdrom", ... */
  readonly device: string;
  /** The file or block device path; "pool/volume" for a type="volume" disk. */
  readonly source: string | null;
  readonly bus: string | null;
  readonly format: string | null;
}

export interface InterfaceDefinition {
  readonly type: string;
  /** The bridge or network name; null for user networking. */
  readonly source: string | null;
  readonly mac: string | null;
  readonly model: string | null;
}

/** The fields of a domain we own; absent elements are null (not undefined) so the value survives Pulumi state. */
export interface DomainDefinition {
  readonly name: string;
  readonly uuid: string | null;
  /** "kvm" or "qemu". */
  readonly type: string;
  readonly description: string;
  /** libosinfo id from <metadata>, e.g. http://libosinfo.org/linux/2022. */
  readonly osinfoId: string | null;
  readonly memoryMiB: number;
  /** Virtual CPUs the guest boots with (<vcpu current> when set). */
  readonly vcpus: number;
  readonly cpuMode: string | null;
  /** Machine family: "q35" for pc-q35-7.2, "pc" for pc-i440fx-*; other values as written. */
  readonly machine: string | null;
  readonly firmware: "bios" | "uefi" | "uefi-secure-boot";
  /** <smbios mode> in <os>: "host" copies the host's system information. */
  readonly sysinfo: string | null;
  readonly disks: readonly DiskDefinition[];
  readonly interfaces: readonly InterfaceDefinition[];
  /** Host PCI addresses (0000:00:1a.0), sorted; other host devices as "usb 0x1234:0x5678". */
  readonly hostdevs: readonly string[];
  readonly memballoon: string | null;
  /** Graphics, video, sound and input devices; a headless guest has none (libvirt's implicit PS/2 pair aside). */
  readonly graphicsVideoSoundInput: readonly string[];
}

const LIBOSINFO_NS = "http://libosinfo.org/xmlns/libvirt/domain/1.0";

// ---------------------------------------------------------------------------------------------
// Rendering

interface ResolvedDisk {
  readonly spec: DomainDiskSpec;
  readonly path: string;
  readonly format: string;
}

function resolveDisks(spec: DomainSpec, facts: DomainHostFacts): ResolvedDisk[] {
  const problems: string[] = [];
  const resolved = spec.disks.map((disk, i) => {
    const volume = facts.volumes.find((v) => v.pool === disk.pool && v.name === disk.volume);
    if (!volume) {
      const known = facts.volumes.map((v) => `${v.pool}/${v.name}`).join(", ") || "none";
      problems.push(
        `disks[${i}]: there is no volume ${disk.pool}/${disk.volume} on the host (volumes found: ${known}); ` +
          `declare it as a volume in pool ${disk.pool}, or fix disks[${i}].pool and disks[${i}].volume`,
      );
      return undefined;
    }
    if (disk.format !== undefined && disk.format !== volume.format) {
      problems.push(
        `disks[${i}].format is "${disk.format}" but volume ${disk.pool}/${disk.volume} is ${volume.format} ` +
          `(qemu-img info); remove format or write "${volume.format}"`,
      );
    }
    return { spec: disk, path: volume.path, format: volume.format };
  });
  if (problems.length > 0) throw new Error(`LibvirtDomain ${spec.name}:\n- ${problems.join("\n- ")}`);
  return resolved as ResolvedDisk[];
}

function resolveOsinfoId(spec: DomainSpec, facts: DomainHostFacts): string | undefined {
  const variant = spec.osVariant;
  if (variant === "generic") return undefined;
  if (/^https?:\/\//.test(variant)) return variant;
  const id = facts.osinfoIds?.[variant];
  if (id !== undefined) return id;
  throw new Error(
    facts.osinfoIds === undefined
      ? `LibvirtDomain ${spec.name}: osVariant "${variant}" needs osinfo-query on the host to find its libosinfo id ` +
          `(Debian package libosinfo-bin); install it, or write the full id such as http://libosinfo.org/linux/2022, or "generic"`
      : `LibvirtDomain ${spec.name}: osVariant "${variant}" is not known to libosinfo on the host (osinfo-query os); ` +
          `write a short id it lists, such as linux2022, a full id such as http://libosinfo.org/linux/2022, or "generic"`,
  );
}

/** vda, vdb, ... vdz, vdaa: the kernel's sd/vd naming. */
function driveLetters(index: number): string {
  let letters = "";
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) letters = String.fromCharCode(97 + ((n - 1) % 26)) + letters;
  return letters;
}

function renderDisks(disks: readonly ResolvedDisk[]): XmlElement[] {
  // SATA and SCSI disks share the sd namespace, virtio disks have their own (libvirt requires <target dev>).
  let virtio = 0;
  let sd = 0;
  return disks.map((disk) =>
    element("disk", { type: "file", device: "disk" }, [
      element("driver", { name: "qemu", type: disk.format }),
      element("source", { file: disk.path }),
      element("target", {
        dev: disk.spec.bus === "virtio" ? `vd${driveLetters(virtio++)}` : `sd${driveLetters(sd++)}`,
        bus: disk.spec.bus,
      }),
    ]),
  );
}

function renderOs(spec: DomainSpec, facts: DomainHostFacts): XmlElement {
  const uefi = spec.boot === "uefi";
  const explicit = uefi ? facts.firmware : undefined;
  const autoselect = uefi && explicit === undefined;
  return element("os", { firmware: autoselect ? "efi" : undefined }, [
    // q35 gives the guest PCIe root ports for passed-through devices; SeaBIOS boots on it too.
    element("type", { arch: "x86_64", machine: "q35" }, ["hvm"]),
    // Left to itself, autoselection prefers secure-boot firmware with Microsoft keys enrolled on
    // Debian and Ubuntu, which refuses to boot HAOS ("Access Denied").
    autoselect &&
      element("firmware", {}, [
        element("feature", { enabled: "no", name: "secure-boot" }),
        element("feature", { enabled: "no", name: "enrolled-keys" }),
      ]),
    explicit && element("loader", { readonly: "yes", type: "pflash" }, [explicit.loader]),
    explicit && element("nvram", { template: explicit.nvramTemplate }),
    element("boot", { dev: "hd" }),
    spec.sysinfoHost && element("smbios", { mode: "host" }),
  ]);
}

function renderInterfaces(spec: DomainSpec, facts: DomainHostFacts): XmlElement[] {
  // A MAC libvirt generated earlier is kept (by position), or every redefinition would give the
  // guest a new one and with it a new DHCP lease.
  const previous = facts.existing?.definition.interfaces ?? [];
  return spec.networks.map((network, i) => {
    const mac = network.mac ?? previous[i]?.mac ?? undefined;
    const source =
      network.type === "bridge" ? { bridge: network.bridge } : network.type === "network" ? { network: network.network } : undefined;
    return element("interface", { type: network.type }, [
      mac !== undefined && element("mac", { address: mac }),
      source && element("source", source),
      element("model", { type: "virtio" }),
    ]);
  });
}

function renderHostdev(address: string): XmlElement {
  const [domain, bus, slotAndFunction] = address.split(":");
  const [slot, fn] = slotAndFunction.split(".");
  // managed="yes": libvirt detaches the device from its host driver at start if it is not on vfio-pci already.
  return element("hostdev", { mode: "subsystem", type: "pci", managed: "yes" }, [
    element("source", {}, [element("address", { domain: `0x${domain}`, bus: `0x${bus}`, slot: `0x${slot}`, function: `0x${fn}` })]),
  ]);
}

/**
 * The complete domain XML for `virsh define`. The UUID of an existing domain of this name is kept:
 * redefining a name under another UUID fails ("domain ... already exists with uuid ..."); a new
 * domain gets `newUuid` (the stack's, see stackUuid.ts), or one from libvirt without it.
 */
export function renderDomainXml(spec: DomainSpec, facts: DomainHostFacts, newUuid?: string): string {
  const disks = resolveDisks(spec, facts);
  const osinfoId = resolveOsinfoId(spec, facts);
  const uuid = facts.existing?.definition.uuid ?? newUuid;
  return renderXml(
    element("domain", { type: facts.kvm ? "kvm" : "qemu" }, [
      element("name", {}, [spec.name]),
      uuid !== undefined && element("uuid", {}, [uuid]),
      spec.description !== "" && element("description", {}, [spec.description]),
      osinfoId !== undefined &&
        element("metadata", {}, [
          element("libosinfo:libosinfo", { "xmlns:libosinfo": LIBOSINFO_NS }, [element("libosinfo:os", { id: osinfoId })]),
        ]),
      element("memory", { unit: "MiB" }, [String(spec.memoryMiB)]),
      // No balloon, so the guest always has all of its memory.
      element("currentMemory", { unit: "MiB" }, [String(spec.memoryMiB)]),
      element("vcpu", { placement: "static" }, [String(spec.vcpus)]),
      renderOs(spec, facts),
      // UEFI on x86 needs ACPI (libvirt refuses the domain otherwise).
      element("features", {}, [element("acpi"), element("apic")]),
      element("cpu", { mode: spec.cpu }),
      element("clock", { offset: "utc" }),
      element("devices", {}, [
        ...renderDisks(disks),
        disks.some((d) => d.spec.bus === "scsi") && element("controller", { type: "scsi", index: 0, model: "virtio-scsi" }),
        ...renderInterfaces(spec, facts),
        // With graphics none, the serial console is the way in (virt-install adds the same pair).
        element("serial", { type: "pty" }, [element("target", { port: 0 })]),
        element("console", { type: "pty" }, [element("target", { type: "serial", port: 0 })]),
        ...spec.hostdevs.map(renderHostdev),
        element("memballoon", { model: "none" }),
      ]),
    ]),
  );
}

// ---------------------------------------------------------------------------------------------
// Parsing

const UNIT_BYTES: Record<string, number> = {
  b: 1, bytes: 1,
  KB: 1e3, k: 2 ** 10, KiB: 2 ** 10,
  MB: 1e6, M: 2 ** 20, MiB: 2 ** 20,
  GB: 1e9, G: 2 ** 30, GiB: 2 ** 30,
  TB: 1e12, T: 2 ** 40, TiB: 2 ** 40,
};

function memoryMiB(e: XmlElement | undefined): number {
  // libvirt's default unit is KiB (formatdomain: "Memory Allocation").
  const unit = e?.attributes.unit ?? "KiB";
  const bytesPerUnit = UNIT_BYTES[unit];
  const value = Number(textOf(e).trim());
  if (bytesPerUnit === undefined || !Number.isFinite(value)) throw new Error(`domain XML: cannot read <memory unit="${unit}">${textOf(e)}</memory>`);
  return (value * bytesPerUnit) / 2 ** 20;
}

function machineFamily(machine: string | undefined): string | null {
  if (machine === undefined) return null;
  if (/^(?:pc-)?q35(?:-|$)/.test(machine)) return "q35";
  if (/^pc(?:-i440fx(?:-|$)|$)/.test(machine)) return "pc";
  return machine;
}

function firmwareOf(os: XmlElement | undefined): DomainDefinition["firmware"] {
  if (!os) return "bios";
  const loader = find(os, "loader");
  const efi = os.attributes.firmware === "efi" || loader?.attributes.type === "pflash";
  if (!efi) return "bios";
  const secureBootFeature = findAll(os, "firmware/feature").find((f) => f.attributes.name === "secure-boot");
  const secure = loader?.attributes.secure === "yes" || secureBootFeature?.attributes.enabled === "yes";
  return secure ? "uefi-secure-boot" : "uefi";
}

function osinfoIdOf(root: XmlElement): string | null {
  for (const entry of findAll(root, "metadata").flatMap((m) => m.children)) {
    if (typeof entry === "string") continue;
    const prefix = entry.name.includes(":") ? entry.name.split(":")[0] : undefined;
    const nsAttribute = prefix ? `xmlns:${prefix}` : "xmlns";
    const namespace = entry.attributes[nsAttribute] ?? find(root, "metadata")?.attributes[nsAttribute] ?? root.attributes[nsAttribute];
    if (namespace !== LIBOSINFO_NS) continue;
    return find(entry, prefix ? `${prefix}:os` : "os")?.attributes.id ?? null;
  }
  return null;
}

/** "0x1a" (libvirt writes hex) or "26", as hex digits padded to `width`. */
function hexField(value: string | undefined, width: number): string {
  const n = value === undefined ? 0 : /^0x/i.test(value) ? parseInt(value, 16) : parseInt(value, 10);
  return n.toString(16).padStart(width, "0");
}

function hostdevOf(hostdev: XmlElement): string {
  const type = hostdev.attributes.type ?? "unknown";
  const a = find(hostdev, "source/address")?.attributes;
  const pci = a && normalizePciAddress(`${hexField(a.domain, 4)}:${hexField(a.bus, 2)}:${hexField(a.slot, 2)}.${hexField(a.function, 1)}`);
  if (type === "pci" && pci) return pci;
  const vendor = find(hostdev, "source/vendor")?.attributes.id;
  const product = find(hostdev, "source/product")?.attributes.id;
  return vendor && product ? `${type} ${vendor}:${product}` : `${type} hostdev`;
}

function diskOf(disk: XmlElement): DiskDefinition {
  const source = find(disk, "source")?.attributes;
  const volume = source?.pool !== undefined && source.volume !== undefined ? `${source.pool}/${source.volume}` : undefined;
  return {
    device: disk.attributes.device ?? "disk",
    source: source?.file ?? source?.dev ?? volume ?? null,
    bus: find(disk, "target")?.attributes.bus ?? null,
    format: find(disk, "driver")?.attributes.type ?? null,
  };
}

function interfaceOf(nic: XmlElement): InterfaceDefinition {
  const source = find(nic, "source")?.attributes;
  return {
    type: nic.attributes.type ?? "unknown",
    source: source?.bridge ?? source?.network ?? source?.dev ?? null,
    mac: find(nic, "mac")?.attributes.address?.toLowerCase() ?? null,
    model: find(nic, "model")?.attributes.type ?? null,
  };
}

function graphicsVideoSoundInputOf(devices: XmlElement | undefined): string[] {
  if (!devices) return [];
  const found: string[] = [];
  for (const device of devices.children) {
    if (typeof device === "string") continue;
    const type = device.attributes.type ?? "";
    if (device.name === "graphics") found.push(`graphics ${type}`);
    if (device.name === "sound") found.push(`sound ${device.attributes.model ?? ""}`);
    if (device.name === "video") {
      const model = find(device, "model")?.attributes.type ?? "";
      if (model !== "none") found.push(`video ${model}`);
    }
    // libvirt adds a PS/2 mouse and keyboard to every x86 guest: they are part of the i8042
    // controller and cannot be removed, so they are not a declared input device.
    if (device.name === "input" && !(device.attributes.bus === "ps2" && (type === "mouse" || type === "keyboard"))) {
      found.push(`input ${type} ${device.attributes.bus ?? ""}`.trim());
    }
  }
  return found;
}

/** Projects a domain XML (best `virsh dumpxml --inactive`) onto the fields LibvirtDomain owns. */
export function parseDomainXml(xml: string): DomainDefinition {
  const root = parseXml(xml);
  if (root.name !== "domain") throw new Error(`expected a <domain> document, found <${root.name}>`);
  const os = find(root, "os");
  const vcpu = find(root, "vcpu");
  const cpu = find(root, "cpu");
  const devices = find(root, "devices");
  return {
    name: textOf(find(root, "name")).trim(),
    uuid: textOf(find(root, "uuid")).trim().toLowerCase() || null,
    type: root.attributes.type ?? "unknown",
    description: textOf(find(root, "description")),
    osinfoId: osinfoIdOf(root),
    memoryMiB: memoryMiB(find(root, "memory")),
    vcpus: Number(vcpu?.attributes.current ?? textOf(vcpu).trim()),
    cpuMode: cpu ? (cpu.attributes.mode ?? "custom") : null,
    machine: machineFamily(os && find(os, "type")?.attributes.machine),
    firmware: firmwareOf(os),
    sysinfo: (os && find(os, "smbios")?.attributes.mode) ?? null,
    disks: findAll(root, "devices/disk").map(diskOf),
    interfaces: findAll(root, "devices/interface").map(interfaceOf),
    hostdevs: findAll(root, "devices/hostdev").map(hostdevOf).sort(),
    memballoon: find(root, "devices/memballoon")?.attributes.model ?? null,
    graphicsVideoSoundInput: graphicsVideoSoundInputOf(devices),
  };
}
