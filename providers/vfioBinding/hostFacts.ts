// What VfioBinding needs to know about a host, and the parsing of the command output it comes
// from. Gathering (which commands, over SSH) belongs to the resource; these functions only read text.
import { normalizePciAddress } from "../kernel/pci";
import type { HostNeed } from "./hostNeeds";

export interface PciDevice {
  /** Full form: "0000:00:1d.0". */
  readonly address: string;
  readonly vendor: string;
  readonly device: string;
  /** Base class and subclass, 4 hex digits: "0c03" (USB), "0604" (PCI bridge). */
  readonly class: string;
  /** `lspci -k` "Kernel driver in use" (a driver name: ehci-pci, xhci_hcd, vfio-pci). */
  readonly driver?: string;
  /** `lspci -k` "Kernel modules": the modules whose modules.alias match it (module names: ehci_pci, xhci_pci). */
  readonly modules?: readonly string[];
  /** Absent while the IOMMU is off. */
  readonly iommuGroup?: number;
  readonly description?: string;
}

export interface UsbDevice {
  readonly bus: number;
  /** "1d6b:0002". */
  readonly vendorProduct: string;
  /** The PCI address of the host controller the device hangs off. */
  readonly controllerAddress: string;
  readonly description?: string;
}

export interface HostFacts {
  readonly pciDevices: readonly PciDevice[];
  readonly usbDevices: readonly UsbDevice[];
  /**
   * What the host needs to boot and to stay reachable (its filesystems, swap, crypttab volumes and
   * this SSH session), each with the PCI functions it rests on and what could not be traced.
   */
  readonly hostNeeds: readonly HostNeed[];
  /**
   * Whether the boot configuration the host will boot next turns the IOMMU on (the stack's kernel
   * args do, see kernel/preflight.ts iommuOnAtBoot). Only read when the running kernel shows no IOMMU groups.
   */
  readonly iommuEnabledAtNextBoot: boolean;
}

export const VENDOR_DEVICE_ID = /^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$/;
export const PCI_BRIDGE_CLASS = "0604";

export const vendorDevice = (d: Pick<PciDevice, "vendor" | "device">): string => `${d.vendor}:${d.device}`;

const LSPCI_DEVICE = /^(\S+)\s+(.*?)\s+\[([0-9a-fA-F]{4})\]:\s+(.*)\s+\[([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\]/;

/** `lspci -Dnnk` (or `-nnk`, domain 0000 assumed). IOMMU groups come from parseIommuGroups. */
export function parseLspci(text: string): PciDevice[] {
  const devices: PciDevice[] = [];
  for (const line of text.split("\n")) {
    const header = LSPCI_DEVICE.exec(line);
    const address = header ? normalizePciAddress(header[1]) : undefined;
    if (header && address) {
      const [, , className, klass, name, vendor, device] = header;
      devices.push({ address, vendor: vendor.toLowerCase(), device: device.toLowerCase(), class: klass.toLowerCase(), description: `${className}: ${name}` });
      continue;
    }
    const last = devices.at(-1);
    const detail = /^\s+Kernel (driver in use|modules):\s*(.*)$/.exec(line);
    if (!last || !detail) continue;
    devices[devices.length - 1] =
      detail[1] === "driver in use"
        ? { ...last, driver: detail[2].trim() }
        : { ...last, modules: detail[2].split(",").map((m) => m.trim()).filter((m) => m !== "") };
  }
  return devices;
}

/** `find /sys/kernel/iommu_groups/ -type l`: "/sys/kernel/iommu_groups/4/devices/0000:00:1a.0" per line. */
export function parseIommuGroups(text: string): Map<string, number> {
  const groups = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /iommu_groups\/(\d+)\/devices\/([^/\s]+)\s*$/.exec(line);
    const address = match ? normalizePciAddress(match[2]) : undefined;
    if (match && address) groups.set(address, Number(match[1]));
  }
  return groups;
}

export function withIommuGroups(devices: readonly PciDevice[], groups: ReadonlyMap<string, number>): PciDevice[] {
  return devices.map((d) => (groups.has(d.address) ? { ...d, iommuGroup: groups.get(d.address) } : d));
}

/**
 * The PCI device nearest to a sysfs object: `readlink -f /sys/class/block/vda` ->
 * /sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda -> "0000:00:04.0". Undefined when
 * the object is not on PCI.
 */
export function pciAddressOfSysfsPath(path: string): string | undefined {
  const addresses = path.split("/").filter((part) => /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i.test(part));
  return addresses.length > 0 ? normalizePciAddress(addresses[addresses.length - 1]) : undefined;
}

/**
 * One USB device per line: its resolved sysfs path, idVendor:idProduct, then optionally the product
 * string, as printed by
 * `for d in /sys/bus/usb/devices/*; do [ -r $d/idVendor ] && echo "$(readlink -f $d) $(cat $d/idVendor):$(cat $d/idProduct) $(cat $d/product 2>/dev/null)"; done`.
 */
export function parseUsbDevices(text: string): UsbDevice[] {
  const devices: UsbDevice[] = [];
  for (const line of text.split("\n")) {
    const match = /^(\S+)\s+([0-9a-fA-F]{4}:[0-9a-fA-F]{4})(?:\s+(.*))?$/.exec(line.trim());
    if (!match) continue;
    const [, path, vendorProduct, product] = match;
    const bus = /\/usb(\d+)(\/|$)/.exec(path);
    const controllerAddress = pciAddressOfSysfsPath(path);
    if (!bus || !controllerAddress) continue;
    const description = product?.trim();
    devices.push({ bus: Number(bus[1]), vendorProduct: vendorProduct.toLowerCase(), controllerAddress, ...(description ? { description } : {}) });
  }
  return devices;
}
