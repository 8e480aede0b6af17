// What a host offers for passthrough, as plain data: its IOMMU groups with their devices, and its
// USB buses with the controller, group and devices of each. Built by a pure function from the facts
// VfioBinding reads, so a program, the CLI and the tests all see the same thing.
import { CpuVendor, iommuArgsFor, iommuPreflight, PreflightVerdict } from "../kernel/preflight";
import { PciDevice, vendorDevice } from "../vfioBinding/hostFacts";
import { describeUnresolved } from "../vfioBinding/hostNeeds";
import type { VfioHostReading } from "../vfioBinding/readFacts";

/** Why the host cannot do without a device. */
export type HostRole = "root filesystem" | "host storage" | "SSH NIC";

export interface DiscoveredPciDevice {
  /** "0000:00:1a.0". */
  readonly address: string;
  /** "8086:3a67". */
  readonly vendorDevice: string;
  /** Base class and subclass, "0c03". */
  readonly class: string;
  /** As lspci names the class: "USB controller". */
  readonly className: string;
  /** As lspci names the device: "Intel Corporation 82801JD/DO (ICH10 Family) USB UHCI Controller #4". */
  readonly name: string;
  /** The driver bound now; absent when none is. */
  readonly driver?: string;
  readonly iommuGroup?: number;
  readonly hostRoles: readonly HostRole[];
}

export interface DiscoveredIommuGroup {
  readonly group: number;
  readonly devices: readonly DiscoveredPciDevice[];
}

export interface DiscoveredUsbDevice {
  /** "046d:c52b". */
  readonly vendorProduct: string;
  readonly product?: string;
}

export interface DiscoveredUsbBus {
  readonly bus: number;
  readonly controllerAddress: string;
  /** Undefined only when lspci does not list the controller sysfs names. */
  readonly controller?: DiscoveredPciDevice;
  /** What is plugged in, root hub left out. */
  readonly devices: readonly DiscoveredUsbDevice[];
}

export interface HostDiscovery {
  /** user@host:port. */
  readonly host: string;
  /** Whether the running kernel has IOMMU groups at all. */
  readonly iommuEnabled: boolean;
  /** The IOMMU switches on the running kernel's command line ("intel_iommu=on", "iommu=pt"). */
  readonly iommuArgs: readonly string[];
  /** Whose IOMMU it is, for the advice on turning it on: the CPU's vendor, else what the host bridge implies. */
  readonly platform: CpuVendor;
  /** The preflight's verdict (kernel/preflight.ts) on the IOMMU args discovery suggests for this platform: what KernelCmdline and VfioBinding will refuse. */
  readonly preflight: PreflightVerdict & { readonly args: readonly string[] };
  readonly groups: readonly DiscoveredIommuGroup[];
  /** Devices in no group: all of them while the IOMMU is off. */
  readonly ungrouped: readonly DiscoveredPciDevice[];
  readonly usbBuses: readonly DiscoveredUsbBus[];
  /** USB controllers with no bus: bound to vfio-pci (passed through already) or to no driver. */
  readonly usbControllersWithoutBus: readonly DiscoveredPciDevice[];
  readonly kernel: { readonly running: string; readonly next: string };
  readonly warnings: readonly string[];
}

export const USB_CONTROLLER_CLASS = "0c03";

/** Root hubs are the kernel's own devices on every bus (vendor 1d6b, the Linux Foundation). */
const isRootHub = (vendorProduct: string) => vendorProduct.startsWith("1d6b:");

function discoveredDevice(d: PciDevice, roles: ReadonlyMap<string, HostRole[]>): DiscoveredPciDevice {
  // parseLspci keeps lspci's "<class name>: <device name>"; class names hold no ": ".
  const description = d.description ?? "";
  const colon = description.indexOf(": ");
  return {
    address: d.address,
    vendorDevice: vendorDevice(d),
    class: d.class,
    className: colon >= 0 ? description.slice(0, colon) : "Class",
    name: colon >= 0 ? description.slice(colon + 2) : description,
    ...(d.driver ? { driver: d.driver } : {}),
    ...(d.iommuGroup !== undefined ? { iommuGroup: d.iommuGroup } : {}),
    hostRoles: roles.get(d.address) ?? [],
  };
}

export function buildHostDiscovery(host: string, reading: VfioHostReading): HostDiscovery {
  const { facts } = reading;
  const roles = new Map<string, HostRole[]>();
  for (const need of facts.hostNeeds) {
    const role: HostRole = need.kind === "ssh" ? "SSH NIC" : need.name === "/" ? "root filesystem" : "host storage";
    for (const address of need.controllers) roles.set(address, [...new Set([...(roles.get(address) ?? []), role])]);
  }

  const devices = [...facts.pciDevices].sort((a, b) => a.address.localeCompare(b.address)).map((d) => discoveredDevice(d, roles));
  const byAddress = new Map(devices.map((d) => [d.address, d]));
  const groupNumbers = [...new Set(devices.flatMap((d) => (d.iommuGroup === undefined ? [] : [d.iommuGroup])))].sort((a, b) => a - b);

  const buses = [...new Set(facts.usbDevices.map((u) => u.bus))].sort((a, b) => a - b);
  const usbBuses = buses.map((bus): DiscoveredUsbBus => {
    const onBus = facts.usbDevices.filter((u) => u.bus === bus);
    const controllerAddress = onBus[0].controllerAddress;
    const controller = byAddress.get(controllerAddress);
    return {
      bus,
      controllerAddress,
      ...(controller ? { controller } : {}),
      devices: onBus
        .filter((u) => !isRootHub(u.vendorProduct))
        .map((u) => ({ vendorProduct: u.vendorProduct, ...(u.description ? { product: u.description } : {}) })),
    };
  });

  const hostBridge = facts.pciDevices.find((d) => d.class === "0600");
  const iommuArgs = reading.cmdline.split(/\s+/).filter((arg) => /^(intel_iommu|amd_iommu|iommu)=/.test(arg));
  const platform: CpuVendor =
    reading.preflight.vendor !== "unknown" ? reading.preflight.vendor : hostBridge?.vendor === "8086" ? "intel" : hostBridge?.vendor === "1022" ? "amd" : "unknown";
  const args = iommuArgsFor(platform);
  return {
    host,
    iommuEnabled: groupNumbers.length > 0,
    iommuArgs,
    platform,
    preflight: { args, ...iommuPreflight(reading.preflight, { args, allowUnsafeInterrupts: false }) },
    groups: groupNumbers.map((group) => ({ group, devices: devices.filter((d) => d.iommuGroup === group) })),
    ungrouped: devices.filter((d) => d.iommuGroup === undefined),
    usbBuses,
    usbControllersWithoutBus: devices.filter((d) => d.class === USB_CONTROLLER_CLASS && !usbBuses.some((bus) => bus.controllerAddress === d.address)),
    kernel: { running: reading.runningKernel, next: reading.kernel.release },
    // VfioBinding refuses to run until these are acknowledged; discovery only reports them.
    warnings: [...reading.warnings, ...facts.hostNeeds.filter((need) => need.unresolved.length > 0).map(describeUnresolved)],
  };
}
