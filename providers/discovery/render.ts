// Text for a person choosing what to pass through: the IOMMU group table (the classic
// `for g in /sys/kernel/iommu_groups/*; do lspci -nns ...` listing), the USB bus table, and the
// stack config that selects a whole group. Pure: the discovery data in, a string out.
import { iommuArgsFor } from "../kernel/preflight";
import { PCI_BRIDGE_CLASS } from "../vfioBinding/hostFacts";
import { DiscoveredPciDevice, HostDiscovery, HostRole, USB_CONTROLLER_CLASS } from "./inventory";

const roleText: Record<HostRole, string> = {
  "root filesystem": "holds the host's root filesystem",
  "host storage": "holds a filesystem, swap area or encrypted volume the host needs at boot",
  "SSH NIC": "carries this SSH session",
};

/** `lspci -Dnns` style, then the driver in use and what the host needs it for. */
export function deviceLine(d: DiscoveredPciDevice): string {
  const roles = d.hostRoles.length > 0 ? `  (${d.hostRoles.map((r) => roleText[r]).join(", ")})` : "";
  return `${d.address} ${d.className} [${d.class}]: ${d.name} [${d.vendorDevice}]  driver: ${d.driver ?? "none"}${roles}`;
}

const AMD_BY_ITSELF =
  "the kernel turns the AMD IOMMU on by itself when the firmware enables it (amd_iommu=on is no kernel value), so enable AMD-Vi/IOMMU in the firmware setup";

/**
 * What to do while the host shows no IOMMU groups, tailored to its platform and command line. On
 * AMD no argument turns the IOMMU on (kernel/preflight.ts), so the advice is the firmware's.
 */
export function iommuOffAdvice(d: Pick<HostDiscovery, "host" | "iommuArgs" | "platform">): string {
  const enabling = d.iommuArgs.filter((arg) => arg === "intel_iommu=on");
  if (enabling.length > 0 && d.platform !== "amd") {
    return (
      `The IOMMU is off on ${d.host} although the running kernel was booted with ${enabling.join(" ")}: ` +
      "/sys/kernel/iommu_groups is empty. Turn on VT-d in the firmware setup, then reboot; " +
      "`dmesg | grep -i -e DMAR -e AMD-Vi` tells why the kernel found none."
    );
  }
  const disabling = d.iommuArgs.filter((arg) => /^(intel_iommu|amd_iommu)=off$/.test(arg));
  const why = disabling.length > 0 ? ` (the running kernel was booted with ${disabling.join(" ")})` : "";
  const off = `The IOMMU is off on ${d.host}${why}: /sys/kernel/iommu_groups is empty, so there are no IOMMU groups and nothing can be passed through yet.`;
  const then = "then discover again to see the groups.";
  const args = JSON.stringify(iommuArgsFor("intel")).replace(/","/g, '", "');
  if (d.platform === "amd") {
    const drop = disabling.length > 0 ? `, take ${disabling.join(" ")} off the kernel command line` : "";
    return `${off} On AMD ${AMD_BY_ITSELF}${drop} and reboot; ${then}`;
  }
  const amd = d.platform === "unknown" ? ` (AMD: ${AMD_BY_ITSELF})` : "";
  return `${off} First apply KernelCmdline with args ${args}${amd} and reboot; ${then}`;
}

/** The preflight's verdict: what KernelCmdline and VfioBinding will refuse on this host, and why. */
export function renderPreflight(d: Pick<HostDiscovery, "preflight">): string {
  const args = JSON.stringify(d.preflight.args).replace(/","/g, '", "');
  return [
    `Preflight of the CPU and firmware, for kernelArgs ${args}:`,
    ...d.preflight.refusals.map((r) => `  refused: ${r}`),
    ...d.preflight.notes.map((n) => `  - ${n}`),
  ].join("\n") + "\n";
}

/** Each group with its devices; while the IOMMU is off, the advice and the bare device list; the preflight's verdict before them. */
export function renderIommuGroups(d: HostDiscovery): string {
  const lines: string[] = [];
  if (!d.iommuEnabled) lines.push(iommuOffAdvice(d), "");
  lines.push(renderPreflight(d));
  for (const group of d.groups) {
    lines.push(`IOMMU group ${group.group}:`, ...group.devices.map((device) => `  ${deviceLine(device)}`));
  }
  if (d.ungrouped.length > 0) {
    lines.push(d.iommuEnabled ? "In no IOMMU group:" : "PCI devices (no IOMMU groups yet):", ...d.ungrouped.map((device) => `  ${deviceLine(device)}`));
  }
  return lines.join("\n") + "\n";
}

/** Columns padded to their widest cell; `right` columns are aligned right (numbers). */
function table(header: readonly string[], rows: readonly (readonly string[])[], right: ReadonlySet<number>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : right.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [header, ...rows].map(line).join("\n") + "\n";
}

const controllerCells = (address: string, c: DiscoveredPciDevice | undefined) => [
  address,
  c?.vendorDevice ?? "?",
  c?.driver ?? "-",
  c?.iommuGroup === undefined ? "-" : String(c.iommuGroup),
];

/**
 * One row per USB bus: its controller, the controller's group, and what is plugged in (one per
 * line); then the USB controllers that have no bus because vfio-pci (or no driver) holds them.
 */
export function renderUsbTable(d: HostDiscovery): string {
  if (d.usbBuses.length + d.usbControllersWithoutBus.length === 0) return `No USB controllers on ${d.host}.\n`;
  const busRows = d.usbBuses.flatMap((bus) => {
    const devices = bus.devices.length > 0 ? bus.devices.map((u) => (u.product ? `${u.vendorProduct} ${u.product}` : u.vendorProduct)) : ["-"];
    const first = [String(bus.bus), ...controllerCells(bus.controllerAddress, bus.controller)];
    return devices.map((device, i) => [...(i === 0 ? first : first.map(() => "")), device]);
  });
  const idleRows = d.usbControllersWithoutBus.map((c) => [
    "-",
    ...controllerCells(c.address, c),
    c.driver === "vfio-pci" ? "(no bus: bound to vfio-pci)" : c.driver ? "(no bus)" : "(no bus: no driver bound)",
  ]);
  return table(["Bus", "Controller", "Id", "Driver", "IOMMU group", "USB devices"], [...busRows, ...idleRows], new Set([0, 4]));
}

/** The group a person most likely came for: the first whose devices include a USB controller and nothing the host needs. */
export function suggestedGroup(d: HostDiscovery): number | undefined {
  return d.groups.find(
    (g) => g.devices.some((device) => device.class === USB_CONTROLLER_CLASS) && g.devices.every((device) => device.hostRoles.length === 0),
  )?.group;
}

/**
 * YAML for stacks/Pulumi.<stack>.yaml that hands a whole IOMMU group to vfio-pci (a group goes
 * whole or not at all). Vendor:device ids when no device outside the group shares one (vfio-pci's
 * ids= claims every device with a listed id), else the addresses.
 */
export function renderGroupConfig(d: HostDiscovery, group: number): string {
  if (!d.iommuEnabled) throw new Error(iommuOffAdvice(d));
  const found = d.groups.find((g) => g.group === group);
  if (!found) {
    throw new Error(`${d.host} has no IOMMU group ${group}; its groups are ${d.groups.map((g) => g.group).join(", ")}`);
  }
  const members = found.devices.filter((device) => device.class !== PCI_BRIDGE_CLASS);
  const bridges = found.devices.filter((device) => device.class === PCI_BRIDGE_CLASS);
  if (members.length === 0) {
    throw new Error(`IOMMU group ${group} on ${d.host} holds only PCI bridges (${bridges.map((b) => b.address).join(", ")}), which vfio-pci does not bind`);
  }
  const outside = [...d.groups.filter((g) => g.group !== group).flatMap((g) => g.devices), ...d.ungrouped];
  const shared = members.filter((m) => outside.some((o) => o.vendorDevice === m.vendorDevice));
  const byId = shared.length === 0;

  const lines = ["config:", `  # IOMMU group ${group} of ${d.host}, whole: vfio-pci takes a group entirely or not at all.`];
  for (const s of shared) {
    const elsewhere = outside.filter((o) => o.vendorDevice === s.vendorDevice).map((o) => o.address);
    lines.push(`  # ${s.vendorDevice} is also ${elsewhere.join(", ")}, outside the group: select by address and bind by address (bindBy: address).`);
  }
  for (const b of bridges) lines.push(`  # ${b.address} (${b.className}) stays with the host: vfio-pci does not bind bridges.`);
  for (const m of members.filter((member) => member.hostRoles.length > 0)) {
    lines.push(
      `  # WARNING: ${m.address} ${m.hostRoles.map((r) => roleText[r]).join(" and ")}; the host loses it at the next boot ` +
        "unless it is taken out of this group's selection (VfioBinding refuses it without allowHostCritical).",
    );
  }
  const entries = byId
    ? [...new Set(members.map((m) => m.vendorDevice))].map((id) => {
        const same = members.filter((m) => m.vendorDevice === id);
        return `"${id}" # ${same.map((m) => m.address).join(", ")} ${same[0].className}: ${same[0].name}`;
      })
    : members.map((m) => `"${m.address}" # ${m.vendorDevice} ${m.className}: ${m.name}`);
  lines.push("  vfio-host:vfio:", "    devices:", ...entries.map((entry) => `      - ${entry}`));
  return lines.join("\n") + "\n";
}
