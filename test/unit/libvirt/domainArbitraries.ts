// Generators of valid LibvirtDomain inputs together with host facts that satisfy them.
import fc from "fast-check";
import type { DomainInputs } from "../../../providers/libvirt/domainSpec";
import type { DomainHostFacts, ResolvedVolume } from "../../../providers/libvirt/domainXml";
import { isXmlText } from "../../../providers/text/xml";

/** Any text XML can carry, biased towards markup characters. */
export const xmlText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 30 }).filter(isXmlText),
  fc.constantFrom(`Fish & <Chips> "quoted" 'single'`, "]]>", "&amp;", "line\r\nbreak", "\ttab", " ", ""),
);

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

const mac = fc
  .tuple(fc.integer({ min: 0, max: 127 }).map((n) => n * 2), fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 5, maxLength: 5 }), fc.boolean())
  .map(([first, rest, upper]) => {
    const text = [first, ...rest].map((b) => hex(b, 2)).join(":");
    return upper ? text.toUpperCase() : text;
  });

/** A PCI address in one of the three accepted spellings, with its canonical form. */
const pci = fc
  .record({
    domain: fc.constantFrom(0, 1, 0xffff),
    bus: fc.integer({ min: 0, max: 255 }),
    slot: fc.integer({ min: 0, max: 31 }),
    fn: fc.integer({ min: 0, max: 7 }),
    spelling: fc.constantFrom("nodedev", "full", "short"),
  })
  .map(({ domain, bus, slot, fn, spelling }) => {
    const canonical = `${hex(domain, 4)}:${hex(bus, 2)}:${hex(slot, 2)}.${fn}`;
    const written =
      spelling === "nodedev"
        ? `pci_${hex(domain, 4)}_${hex(bus, 2)}_${hex(slot, 2)}_${fn}`
        : spelling === "full" || domain !== 0
          ? canonical.toUpperCase()
          : canonical.slice(5);
    return { canonical, written };
  });

const volumeName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,12}$/);

const network = fc.oneof(
  fc.record({ type: fc.constant("bridge" as const), bridge: fc.stringMatching(/^[A-Za-z0-9_.-]{1,15}$/) }),
  fc.record({ type: fc.constant("network" as const), network: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,10}$/) }),
  fc.record({ type: fc.constant("user" as const) }),
);

export interface DomainCase {
  readonly inputs: DomainInputs;
  readonly facts: DomainHostFacts;
}

export const domainCase: fc.Arbitrary<DomainCase> = fc
  .record({
    name: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,15}$/),
    description: xmlText,
    vcpus: fc.integer({ min: 1, max: 64 }),
    memoryMiB: fc.integer({ min: 1, max: 1 << 20 }),
    cpu: fc.constantFrom("host-passthrough" as const, "host-model" as const),
    sysinfoHost: fc.boolean(),
    osVariant: fc.constantFrom("generic", "linux2022", "http://example.org/os/1"),
    boot: fc.constantFrom("uefi" as const, "bios" as const),
    disks: fc.uniqueArray(
      fc.record({ volume: volumeName, bus: fc.constantFrom("virtio" as const, "sata" as const, "scsi" as const), format: fc.constantFrom("qcow2", "raw"), declareFormat: fc.boolean() }),
      { maxLength: 4, selector: (d) => d.volume },
    ),
    poolDirectory: xmlText.map((t) => `/srv/${t.replace(/\//g, "_")}`),
    networks: fc.array(fc.tuple(network, fc.option(fc.constant(true), { nil: undefined })), { maxLength: 3 }),
    macs: fc.uniqueArray(mac, { minLength: 3, maxLength: 3, selector: (m) => m.toLowerCase() }),
    hostdevs: fc.uniqueArray(pci, { maxLength: 4, selector: (p) => p.canonical }),
    autostart: fc.boolean(),
    running: fc.boolean(),
    kvm: fc.boolean(),
    explicitFirmware: fc.boolean(),
  })
  .map((g) => {
    const volumes: ResolvedVolume[] = g.disks.map((d) => ({ pool: "default", name: d.volume, path: `${g.poolDirectory}/${d.volume}`, format: d.format }));
    const inputs: DomainInputs = {
      name: g.name,
      description: g.description,
      vcpus: g.vcpus,
      memoryMiB: g.memoryMiB,
      cpu: g.cpu,
      sysinfoHost: g.sysinfoHost,
      osVariant: g.osVariant,
      boot: g.boot,
      disks: g.disks.map((d) => ({ pool: "default", volume: d.volume, bus: d.bus, ...(d.declareFormat ? { format: d.format as "qcow2" | "raw" } : {}) })),
      networks: g.networks.map(([n, withMac], i) => ({ ...n, ...(withMac ? { mac: g.macs[i] } : {}) })),
      hostdevs: g.hostdevs.map((p) => p.written),
      autostart: g.autostart,
      running: g.running,
    };
    const facts: DomainHostFacts = {
      kvm: g.kvm,
      volumes,
      osinfoIds: { linux2022: "http://libosinfo.org/linux/2022" },
      ...(g.explicitFirmware ? { firmware: { loader: "/usr/share/OVMF/OVMF_CODE_4M.fd", nvramTemplate: "/usr/share/OVMF/OVMF_VARS_4M.fd" } } : {}),
    };
    return { inputs, facts };
  });
