// PCI functions as Linux names them (lspci -D, /sys/bus/pci/devices): domain:bus:slot.function.
// VfioBinding, LibvirtDomain's hostdevs and HostReboot's check compare addresses in this one form.

export const PCI_ADDRESS = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/;

/** "00:1a.0" or "0000:00:1A.0" -> "0000:00:1a.0"; undefined when it is not a PCI address. */
export function normalizePciAddress(address: string): string | undefined {
  const match = PCI_ADDRESS.exec(address.trim());
  if (!match) return undefined;
  const [, domain, bus, slot, fn] = match;
  return `${domain ?? "0000"}:${bus}:${slot}.${fn}`.toLowerCase();
}
