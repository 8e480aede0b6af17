// The reference host's Home Assistant guest (see the virt-install line in providers/libvirt/domainSpec.ts),
// as LibvirtDomain inputs, and the host facts it is planned against.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { DomainInputs } from "../../../providers/libvirt/domainSpec";
import type { DomainHostFacts } from "../../../providers/libvirt/domainXml";

export const homeAssistantInputs: DomainInputs = {
  name: "homeassistant",
  description: "Home Assistant OS",
  osVariant: "linux2022",
  memoryMiB: 4096,
  vcpus: 2,
  cpu: "host-passthrough",
  sysinfoHost: true,
  disks: [{ pool: "default", volume: "haos_ova-7.5.qcow2", bus: "virtio" }],
  graphics: "none",
  video: "none",
  sound: "none",
  input: "none",
  memballoon: "none",
  boot: "uefi",
  networks: [{ type: "bridge", bridge: "br0", mac: "52:54:00:C4:2D:4A" }],
  hostdevs: ["pci_0000_00_1a_0", "pci_0000_00_1a_1"],
  autostart: true,
  running: true,
};

export const referenceFacts: DomainHostFacts = {
  kvm: true,
  volumes: [{ pool: "default", name: "haos_ova-7.5.qcow2", path: "/var/lib/libvirt/images/haos_ova-7.5.qcow2", format: "qcow2" }],
  osinfoIds: { linux2022: "http://libosinfo.org/linux/2022", debian12: "http://debian.org/debian/12" },
};

/** `virsh dumpxml --inactive homeassistant` after libvirt defined our XML (written by hand after libvirt 9.x). */
export const inactiveFixture = readFileSync(join(__dirname, "fixtures", "homeassistant-inactive.xml"), "utf8");
