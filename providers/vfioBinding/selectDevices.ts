// Which PCI devices vfio-pci will claim, checked against the host before anything is written: a
// device that is not there, half an IOMMU group, a controller of the host's own storage or the SSH
// NIC stop the plan with a message that says what to write instead. So does anything the host
// needs that could not be traced to PCI devices: the guard fails closed until it is acknowledged.
import { normalizeModuleName } from "../kernel/modules";
import { normalizePciAddress } from "../kernel/pci";
import {
  HostFacts,
  PCI_BRIDGE_CLASS,
  PciDevice,
  VENDOR_DEVICE_ID,
  vendorDevice,
} from "./hostFacts";
import { ACKNOWLEDGE_KEY, HostNeed, describeUnresolved, untracedProblem } from "./hostNeeds";

export type BindBy = "ids" | "address";

export interface DeviceSelection {
  /** Vendor:device ids ("8086:3a67": every such device) and PCI addresses ("0000:00:1a.0" or "00:1a.0"). */
  readonly devices?: readonly string[];
  /** Every device of the group except PCI bridges. */
  readonly iommuGroups?: readonly number[];
  /** USB vendor:product ids: the controller the device hangs off, and the rest of that controller's IOMMU group. */
  readonly usbDevices?: readonly string[];
  /** Members of a selected group that stay with the host on purpose. */
  readonly acknowledgeGroupMembers?: readonly string[];
  /** Controllers of the host's storage or SSH NICs that may be passed through anyway. */
  readonly allowHostCritical?: readonly string[];
  /** Host needs (by HostNeed name: "/boot/efi", "ssh"…) that could not be traced and were checked by hand. */
  readonly acknowledgeUnresolvedHostDevices?: readonly string[];
  readonly bindBy?: BindBy;
}

export interface ChosenDevice extends PciDevice {
  /** Which part of the selection brought it in, for messages: `devices` entry "8086:3a67". */
  readonly reason: string;
}

export interface SelectedDevices {
  /** Every device vfio-pci will claim (with bindBy "ids": every device with a listed id), by address. */
  readonly devices: readonly ChosenDevice[];
  readonly groups: readonly number[];
  /** For `options vfio-pci ids=`: sorted, unique. */
  readonly ids: readonly string[];
  readonly addresses: readonly string[];
  /** Host modules that must load after vfio-pci: `softdep <module> pre: vfio-pci`. */
  readonly softdepDrivers: readonly string[];
  /** "deferred" before the first reboot with the IOMMU on: groups were not checked. */
  readonly groupCheck: "enforced" | "deferred";
  readonly warnings: readonly string[];
}

export type SelectionResult = ({ readonly ok: true } & SelectedDevices) | { readonly ok: false; readonly errors: readonly string[]; readonly warnings: readonly string[] };

export const NOTHING_SELECTED =
  'Nothing is selected: `devices`, `iommuGroups` and `usbDevices` are all empty; add e.g. devices: ["8086:3a67"]';

export const IOMMU_OFF =
  "The IOMMU is off on this host: /sys/kernel/iommu_groups is empty and the boot configuration does not turn it on, so no " +
  'device can be passed through. Intel: apply KernelCmdline with args ["intel_iommu=on", "iommu=pt"], reboot, and run again. ' +
  "AMD: the kernel turns the IOMMU on by itself when the firmware enables it (amd_iommu=on is no kernel value), so enable " +
  "AMD-Vi/IOMMU in the firmware setup and take amd_iommu=off off the command line";

export const GROUPS_DEFERRED =
  "IOMMU groups are unknown until the host boots with the IOMMU on (its boot configuration already turns it on): devices " +
  "were checked by id and address only, and group completeness is checked on the first run after the reboot";

const label = (d: PciDevice) => `${d.address} (${vendorDevice(d)})`;
const isBridge = (d: PciDevice) => d.class === PCI_BRIDGE_CLASS;
const sortedUnique = <T>(items: readonly T[], compare?: (a: T, b: T) => number): T[] => [...new Set(items)].sort(compare);
const groupsOf = (devices: Iterable<PciDevice>): number[] =>
  sortedUnique([...devices].flatMap((d) => (d.iommuGroup === undefined ? [] : [d.iommuGroup])), (a, b) => a - b);

/** "a", "a and b", "a, b and c". */
function listing(items: readonly string[]): string {
  return items.length <= 1 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

/** "0000:00:1d.0 (8086:2934) and 0000:00:1d.7 (8086:293a)", for messages. */
export const describeDevices = (devices: readonly PciDevice[]): string => listing(devices.map(label));

/** Lists the ids closest to a mistyped one: same vendor and device prefix, else same vendor, else all. */
function noSuchId(key: string, entry: string, facts: HostFacts): string {
  const ids = sortedUnique(facts.pciDevices.map(vendorDevice));
  const wanted = entry.toLowerCase();
  const near = [wanted.slice(0, 8), wanted.slice(0, 5), ""].map((prefix) => ids.filter((id) => id.startsWith(prefix))).find((tier) => tier.length > 0) ?? [];
  return `${key} entry "${entry}" matches no PCI device on the host (it has ${near.join(", ")}); write an id from \`lspci -nn\`, e.g. "${near[0] ?? "8086:3a67"}"`;
}

function noSuchAddress(key: string, entry: string, facts: HostFacts): string {
  const address = normalizePciAddress(entry) ?? entry;
  const slot = address.slice(0, address.lastIndexOf("."));
  const neighbours = facts.pciDevices.filter((d) => d.address.startsWith(`${slot}.`)).map((d) => d.address);
  const example = neighbours[0] ?? facts.pciDevices[0]?.address ?? "0000:00:1a.0";
  const found = neighbours.length > 0 ? `slot ${slot} has ${neighbours.join(", ")}` : `nothing is in slot ${slot}`;
  return `${key} entry "${entry}" is not a PCI device on the host (${found}); write an address from \`lspci -D\`, e.g. "${example}"`;
}

const ROOT = "the root filesystem";
/** How a storage need is named where its controller is refused: "the root filesystem", "/boot/efi on vfat /dev/sda1". */
const storageName = (need: HostNeed) => (need.name === "/" ? ROOT : need.what);

/**
 * Fails closed: every host need that could not be traced is an error unless acknowledged, then a
 * warning. An acknowledgement of something traced, or of nothing the host needs, is stale: a
 * warning, since the guard still protects whatever it can trace (an SSH session's path changes
 * with where the run starts from).
 */
function checkUnresolved(needs: readonly HostNeed[], acknowledged: readonly string[], errors: string[], warnings: string[]): void {
  for (const need of needs.filter((n) => n.unresolved.length > 0)) {
    if (acknowledged.includes(need.name)) {
      warnings.push(`${untracedProblem(need)}; passed over because \`${ACKNOWLEDGE_KEY}\` lists "${need.name}"`);
    } else errors.push(describeUnresolved(need));
  }
  for (const entry of acknowledged) {
    const need = needs.find((n) => n.name === entry);
    if (need?.unresolved.length) continue;
    warnings.push(
      need
        ? `\`${ACKNOWLEDGE_KEY}\` lists "${entry}", but ${need.what} is traced (${need.controllers.length > 0 ? need.controllers.join(", ") : "it needs no PCI device"}) and protected; the entry has no effect, remove it`
        : `\`${ACKNOWLEDGE_KEY}\` lists "${entry}", which the host does not need (it needs ${listing(needs.map((n) => `"${n.name}"`))}); the entry has no effect, remove it`,
    );
  }
}

/** The host modules that would claim `d`: its modules.alias matches, else the driver bound now. */
export function hostModules(d: PciDevice): string[] {
  const modules = d.modules && d.modules.length > 0 ? d.modules : d.driver ? [d.driver] : [];
  return modules.map(normalizeModuleName).filter((m) => m !== "vfio_pci" && m !== "pci_stub");
}

/**
 * Resolves the selection against the host. Before the first reboot with the IOMMU on, the host has
 * no groups: if `facts.iommuEnabledAtNextBoot`, devices are checked by id and address only and the
 * result says groupCheck "deferred" (the next run after the reboot checks the groups); otherwise
 * that is an error.
 */
export function selectDevices(selection: DeviceSelection, facts: HostFacts): SelectionResult {
  const errors: string[] = [];
  const warnings: string[] = [];
  const byAddress = new Map(facts.pciDevices.map((d) => [d.address, d]));
  const groupsKnown = facts.pciDevices.some((d) => d.iommuGroup !== undefined);
  const members = (group: number) => facts.pciDevices.filter((d) => d.iommuGroup === group);
  const chosen = new Map<string, ChosenDevice>();
  const choose = (d: PciDevice, reason: string) => {
    if (!chosen.has(d.address)) chosen.set(d.address, { ...d, reason });
  };

  const devices = selection.devices ?? [];
  const groups = selection.iommuGroups ?? [];
  const usb = selection.usbDevices ?? [];
  if (devices.length + groups.length + usb.length === 0) errors.push(NOTHING_SELECTED);
  if (!groupsKnown && facts.iommuEnabledAtNextBoot) warnings.push(GROUPS_DEFERRED);
  if (!groupsKnown && !facts.iommuEnabledAtNextBoot) errors.push(IOMMU_OFF);

  for (const entry of devices) {
    const reason = `\`devices\` entry "${entry}"`;
    const isId = VENDOR_DEVICE_ID.test(entry);
    const address = normalizePciAddress(entry);
    const matches = isId
      ? facts.pciDevices.filter((d) => vendorDevice(d) === entry.toLowerCase())
      : facts.pciDevices.filter((d) => d.address === address);
    if (matches.length === 0) errors.push(isId ? noSuchId("`devices`", entry, facts) : noSuchAddress("`devices`", entry, facts));
    for (const d of matches) {
      if (isBridge(d)) {
        errors.push(`${reason} selects ${label(d)}, a PCI bridge (class ${PCI_BRIDGE_CLASS}); vfio-pci does not bind bridges and a group may keep them, so remove it`);
      } else choose(d, reason);
    }
  }

  for (const group of groups) {
    const reason = `\`iommuGroups\` entry ${group}`;
    if (!groupsKnown) {
      errors.push(`${reason} cannot be resolved yet: the host shows no IOMMU groups until it boots with the IOMMU on; select the devices by id or address in \`devices\` for the first run`);
      continue;
    }
    const inGroup = members(group);
    if (inGroup.length === 0) {
      const known = groupsOf(facts.pciDevices);
      errors.push(`${reason} is not an IOMMU group on the host (it has groups ${known.join(", ")}); write a number from /sys/kernel/iommu_groups, e.g. ${known[0]}`);
    } else if (inGroup.every(isBridge)) {
      errors.push(`${reason} holds only PCI bridges (${inGroup.map(label).join(", ")}), which vfio-pci does not bind; remove it`);
    }
    inGroup.filter((d) => !isBridge(d)).forEach((d) => choose(d, reason));
  }

  for (const entry of usb) {
    const reason = `\`usbDevices\` entry "${entry}"`;
    const matches = facts.usbDevices.filter((u) => u.vendorProduct === entry.toLowerCase());
    const controllers = sortedUnique(matches.map((u) => u.controllerAddress));
    if (matches.length === 0) {
      const found = facts.usbDevices.map((u) => `${u.vendorProduct} (bus ${u.bus})`);
      const example = facts.usbDevices.find((u) => !u.vendorProduct.startsWith("1d6b:"))?.vendorProduct ?? "046d:c52b";
      errors.push(`${reason} matches no USB device on the host (found ${found.length > 0 ? found.join(", ") : "none"}); write an id from \`lsusb\`, e.g. "${example}"`);
      continue;
    }
    if (controllers.length > 1) {
      const where = matches.map((u) => `bus ${u.bus} on ${u.controllerAddress}`);
      errors.push(`${reason} matches devices on ${controllers.length} controllers (${where.join(", ")}); put the controller you mean in \`devices\` instead, e.g. "${controllers[0]}"`);
      continue;
    }
    const controller = byAddress.get(controllers[0]);
    if (!controller) {
      errors.push(`${reason} hangs off ${controllers[0]}, which \`lspci\` does not list; the host facts disagree, read them again`);
      continue;
    }
    choose(controller, `${reason} (its controller)`);
    if (controller.iommuGroup === undefined) continue;
    const others = members(controller.iommuGroup).filter((d) => d.address !== controller.address && !isBridge(d) && !chosen.has(d.address));
    others.forEach((d) => choose(d, `${reason} (IOMMU group ${controller.iommuGroup} of its controller)`));
    if (others.length > 0) {
      warnings.push(
        `${reason} hangs off ${label(controller)}, which shares IOMMU group ${controller.iommuGroup} with ` +
          `${describeDevices(others)}; ${others.length === 1 ? "it is" : "they are"} passed through too`,
      );
    }
  }

  for (const key of ["acknowledgeGroupMembers", "allowHostCritical"] as const) {
    for (const entry of selection[key] ?? []) {
      if (!byAddress.has(normalizePciAddress(entry) ?? entry)) errors.push(noSuchAddress(`\`${key}\``, entry, facts));
    }
  }

  // vfio-pci's ids= claims every device with a listed id, selected or not.
  const ids = sortedUnique([...chosen.values()].map(vendorDevice));
  if ((selection.bindBy ?? "ids") === "ids") {
    for (const d of facts.pciDevices) {
      if (chosen.has(d.address) || !ids.includes(vendorDevice(d))) continue;
      chosen.set(d.address, { ...d, reason: `vfio-pci's ids=${vendorDevice(d)}` });
      warnings.push(
        `ids=${vendorDevice(d)} also binds ${label(d)}, which the selection does not name (vfio-pci claims every device ` +
          `with a listed id); select it too, or set \`bindBy: "address"\` to bind only the chosen addresses`,
      );
    }
  }

  const allowed = new Set((selection.allowHostCritical ?? []).map((a) => normalizePciAddress(a) ?? a));
  for (const d of chosen.values()) {
    const needs = facts.hostNeeds.filter((need) => need.controllers.includes(d.address));
    const storage = needs.filter((need) => need.kind !== "ssh").map(storageName);
    const roles = [
      ...(storage.length > 0 ? [{ is: `the controller of ${listing(storage)}`, loses: listing(storage.map((n) => (n === ROOT ? "its root filesystem" : n))) }] : []),
      ...(needs.some((need) => need.kind === "ssh") ? [{ is: "the NIC carrying this SSH session", loses: "this SSH connection" }] : []),
    ];
    if (roles.length === 0) continue;
    const is = listing(roles.map((r) => r.is));
    if (allowed.has(d.address)) {
      warnings.push(`${label(d)} is ${is}; it is passed through because \`allowHostCritical\` lists it`);
    } else {
      errors.push(
        `${d.reason} selects ${label(d)}, ${is}; bound to vfio-pci at boot, the host would lose ${listing(roles.map((r) => r.loses))}. ` +
          `Remove it from the selection, or add "${d.address}" to \`allowHostCritical\` if the host can do without it`,
      );
    }
  }
  checkUnresolved(facts.hostNeeds, selection.acknowledgeUnresolvedHostDevices ?? [], errors, warnings);

  const involved = groupsOf(chosen.values());
  const acknowledged = new Set((selection.acknowledgeGroupMembers ?? []).map((a) => normalizePciAddress(a) ?? a));
  for (const group of involved) {
    const outside = members(group).filter((d) => !chosen.has(d.address) && !isBridge(d));
    const missing = outside.filter((d) => !acknowledged.has(d.address));
    if (missing.length > 0) {
      const [verb, them] = missing.length === 1 ? ["is", "it"] : ["are", "them"];
      errors.push(
        `IOMMU group ${group} is only partly selected: ${describeDevices(missing)} ${verb} not in \`devices\`; ` +
          `add ${them}, or acknowledge ${them} in \`acknowledgeGroupMembers\``,
      );
    }
    for (const d of outside.filter((o) => acknowledged.has(o.address))) {
      warnings.push(
        `IOMMU group ${group}: ${label(d)} stays with the host as \`acknowledgeGroupMembers\` says${d.driver ? ` (driver now: ${d.driver})` : ""}; ` +
          "VFIO accepts the group only while that device has no driver or is bound to vfio-pci or pci-stub",
      );
    }
  }

  if (errors.length > 0) return { ok: false, errors, warnings };
  const selected = [...chosen.values()].sort((a, b) => a.address.localeCompare(b.address));
  return {
    ok: true,
    devices: selected,
    groups: involved,
    ids: sortedUnique(selected.map(vendorDevice)),
    addresses: selected.map((d) => d.address),
    softdepDrivers: sortedUnique(selected.flatMap(hostModules)),
    groupCheck: groupsKnown ? "enforced" : "deferred",
    warnings,
  };
}
