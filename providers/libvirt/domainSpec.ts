import { z } from "zod";
import { expected, explain, shown, strictKeys } from "../inputErrors";
import { normalizePciAddress } from "../kernel/pci";
import { isXmlText } from "../text/xml";
import { libvirtName, volumeName } from "./fieldSchemas";

/** How long a guest gets by default to power off after the ACPI request before the step fails. */
export const SHUTDOWN_TIMEOUT_SECONDS = 300;

// The inputs of a LibvirtDomain, the declarative form of the reference host's
//   virt-install --name homeassistant --os-variant=generic --ram=4096 --vcpus=2 --cpu host
//     --sysinfo host --import --disk vol=default/haos_ova-7.5.qcow2,bus=virtio --graphics none
//     --video none --sound none --input none --memballoon none --boot uefi
//     --network bridge=br0,mac=52:54:00:C4:2D:4A --hostdev pci_0000_00_1a_0 --hostdev pci_0000_00_1a_1
// Guests are headless by construction: no graphics, video, sound or input devices, no memory
// balloon, and a serial console on a pty (`virsh console NAME`). The keys graphics, video, sound,
// input and memballoon exist only so a copied virt-install habit ("none") is accepted.

const EXAMPLE_MAC = "52:54:00:c4:2d:4a";

const mac = z
  .string(expected("a MAC address", EXAMPLE_MAC))
  .regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i, expected("a MAC address (six hex pairs separated by colons)", EXAMPLE_MAC))
  .transform((m) => m.toLowerCase())
  // Bit 0 of the first octet marks a group address (IEEE 802); a NIC cannot own one.
  .refine(
    (m) => (parseInt(m.slice(0, 2), 16) & 1) === 0,
    explain((m: string) => `${shown(m)} is a multicast address (the first octet is odd); write a unicast one such as ${EXAMPLE_MAC}`),
  );

// Linux interface names: at most 15 characters (IFNAMSIZ - 1), no "/" or whitespace.
const bridgeName = z
  .string(expected("a bridge interface name", '"br0"'))
  .regex(/^[A-Za-z0-9_.-]{1,15}$/, expected("a bridge interface name (at most 15 letters, digits, - _ .)", '"br0"'));

const networkSchema = z.discriminatedUnion(
  "type",
  [
    z.strictObject({ type: z.literal("bridge"), bridge: bridgeName, mac: mac.optional() }, strictKeys),
    z.strictObject({ type: z.literal("network"), network: libvirtName('"default"'), mac: mac.optional() }, strictKeys),
    z.strictObject({ type: z.literal("user"), mac: mac.optional() }, strictKeys),
  ],
  explain(
    (n: unknown) =>
      `${shown(typeof n === "object" && n !== null && "type" in n ? n.type : n)} is not an interface type; ` +
      `give type "bridge" (with bridge), "network" (with network) or "user", for example { type: "bridge", bridge: "br0", mac: "${EXAMPLE_MAC}" }`,
  ),
);

// virsh nodedev-list --cap pci names devices pci_0000_00_1a_0.
const NODEDEV_NAME = /^pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$/i;

const pciAddress = z.string(expected("a PCI address", '"0000:00:1a.0"')).transform((text, ctx) => {
  const address = normalizePciAddress(text.trim().replace(NODEDEV_NAME, "$1:$2:$3.$4"));
  if (address) return address;
  ctx.addIssue({
    code: "custom",
    message:
      `${shown(text)} is not a PCI address; write 0000:00:1a.0 (lspci -D), 00:1a.0 (lspci) ` +
      `or pci_0000_00_1a_0 (virsh nodedev-list --cap pci)`,
  });
  return z.NEVER;
});

const diskShape = {
  pool: libvirtName('"default"'),
  volume: volumeName('"haos_ova-7.5.qcow2"'),
  bus: z.enum(["virtio", "sata", "scsi"], expected('a disk bus: "virtio", "sata" or "scsi"', '"virtio"')).default("virtio"),
  /** Checked against the volume's actual format; leave it out to use what the volume is. */
  format: z.enum(["qcow2", "raw"], expected('an image format: "qcow2" or "raw"', '"qcow2"')).optional(),
};

const none = (device: string) =>
  z
    .literal("none", {
      error: (issue) =>
        `${shown(issue.input)} is not supported: guests are headless (${device} is always none; ` +
        `use the serial console, virsh console NAME); remove the key or write "none"`,
    })
    .optional();

const positiveInt = (what: string, example: string) =>
  z.number(expected(what, example)).int(expected(what, example)).min(1, expected(what, example));

// libosinfo short ids (debian12, linux2022), a full libosinfo id, or "generic" (no OS metadata,
// as virt-install --os-variant=generic).
const osVariant = z
  .string(expected("a libosinfo short id", '"linux2022"'))
  .regex(/^(?:[a-z0-9][a-z0-9._-]*|https?:\/\/[^\s"'<>]+)$/, expected("a libosinfo short id or id", '"linux2022" or "generic"'));

const domainShape = {
  name: libvirtName('"homeassistant"'),
  description: z
    .string(expected("text", '"Home Assistant OS"'))
    .refine(
      (d) => isXmlText(d),
      explain((d: string) => `${shown(d)} contains a control character XML cannot carry; write plain text such as "Home Assistant OS"`),
    )
    .default(""),
  /** Take over a domain of this name that exists but was not created by this stack. */
  adopt: z.boolean(expected("true or false", "true")).default(false),
  vcpus: positiveInt("a whole number of virtual CPUs, at least 1", "2"),
  /** host-passthrough exposes the host CPU as is. NB: virt-install's `--cpu host` means host-model. */
  cpu: z
    .enum(["host-passthrough", "host-model"], expected('a CPU mode: "host-passthrough" or "host-model"', '"host-passthrough"'))
    .default("host-passthrough"),
  memoryMiB: positiveInt("a whole number of MiB, at least 1", "4096"),
  /** Copy the host's SMBIOS system information into the guest (virt-install --sysinfo host). */
  sysinfoHost: z.boolean(expected("true or false", "true")).default(false),
  osVariant: osVariant.default("generic"),
  /** "uefi" is UEFI with secure boot off (HAOS and most images do not ship keys it would accept). */
  boot: z.enum(["uefi", "bios"], expected('"uefi" or "bios"', '"uefi"')).default("uefi"),
  disks: z.array(z.strictObject(diskShape, strictKeys), expected("a list of disks", '[{ pool: "default", volume: "haos_ova-7.5.qcow2" }]')).default([]),
  networks: z.array(networkSchema, expected("a list of interfaces", '[{ type: "bridge", bridge: "br0" }]')).default([]),
  hostdevs: z.array(pciAddress, expected("a list of PCI addresses", '["0000:00:1a.0"]')).default([]),
  graphics: none("graphics"),
  video: none("video"),
  sound: none("sound"),
  input: none("input"),
  memballoon: none("the memory balloon"),
  autostart: z.boolean(expected("true or false", "true")).default(true),
  running: z.boolean(expected("true or false", "true")).default(true),
  /** How long a shutdown (destroy, a restart for a boot-time change) waits for the guest to power off after the ACPI request. */
  shutdownTimeoutSeconds: z
    .number(expected("a number of seconds from 1 to 3600", "300"))
    .int(expected("a number of seconds from 1 to 3600", "300"))
    .min(1, expected("a number of seconds from 1 to 3600", "300"))
    .max(3600, expected("a number of seconds from 1 to 3600", "300"))
    .default(SHUTDOWN_TIMEOUT_SECONDS),
};

/** Reports the second and later occurrences of a value of `key[i]` (or of `key[i].field`). */
function refuseRepeats(values: readonly (string | undefined)[], key: string, field: string | undefined, what: string, ctx: z.RefinementCtx): void {
  const first = new Map<string, number>();
  values.forEach((value, index) => {
    if (value === undefined) return;
    const seen = first.get(value);
    if (seen === undefined) first.set(value, index);
    else ctx.addIssue({ code: "custom", path: field ? [key, index, field] : [key, index], message: `${shown(value)} is already in ${key}[${seen}]; ${what}` });
  });
}

function refuseRepeatsOfSpec(spec: z.output<z.ZodObject<typeof domainShape>>, ctx: z.RefinementCtx): void {
  refuseRepeats(spec.hostdevs, "hostdevs", undefined, "a device can be passed through once", ctx);
  refuseRepeats(spec.networks.map((n) => n.mac), "networks", "mac", "each interface needs its own MAC address", ctx);
  refuseRepeats(spec.disks.map((d) => `${d.pool}/${d.volume}`), "disks", undefined, "attach each volume once", ctx);
}

/** A guest as a stack describes it. */
export const domainSpecSchema = z.strictObject(domainShape, strictKeys).superRefine(refuseRepeatsOfSpec);

/**
 * LibvirtDomain's inputs: the guest, and the devices the stack's VfioBinding puts on vfio-pci at
 * its boot (its `planned` addresses). Those hostdevs may still be on their host driver at preview;
 * any other hostdev is refused.
 */
export const domainResourceSchema = z
  .strictObject({ ...domainShape, vfioDevices: z.array(pciAddress, expected("a list of PCI addresses", '["0000:00:1a.0"]')).optional() }, strictKeys)
  .superRefine(refuseRepeatsOfSpec);

/** LibvirtDomain inputs as written in a stack. */
export type DomainInputs = z.input<typeof domainResourceSchema>;
/** LibvirtDomain inputs with defaults filled in and values normalised. */
export type DomainSpec = z.output<typeof domainResourceSchema>;
export type DomainDiskSpec = DomainSpec["disks"][number];
