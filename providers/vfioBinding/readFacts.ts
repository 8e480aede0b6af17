// VfioBinding's facts, read in one SSH round trip: what is on the PCI bus and in which IOMMU group,
// which USB devices hang off which controller, what the host cannot lose (the root filesystem's
// controllers, the NIC this session arrives on), and the kernel that boots next. The shell only
// prints; every section is parsed by a pure function below.
import { KernelModules } from "../initramfsModules/kernelModules";
import { KERNEL_SECTIONS, parseKernelReleases, parseNextKernel } from "../initramfsModules/nextKernel";
import type { RemoteHost } from "../ssh/host";
import { readSections } from "../ssh/sections";
import {
  HostFacts,
  normalizePciAddress,
  parseIommuGroups,
  parseLspci,
  parseUsbDevices,
  pciAddressOfSysfsPath,
  withIommuGroups,
} from "./hostFacts";

export type ModprobeKind = "kmod" | "busybox";

export interface VfioHostReading {
  /** iommuEnabledAtNextBoot is the boot configuration's business: KernelCmdline supplies it. */
  readonly facts: Omit<HostFacts, "iommuEnabledAtNextBoot">;
  /** The kernel that boots next (see NEXT_KERNEL), whose modules the initramfs will hold. */
  readonly kernel: KernelModules;
  /** `uname -r`: differs from kernel.release after a kernel upgrade that has not been booted yet. */
  readonly runningKernel: string;
  /** Which modprobe the initramfs runs. */
  readonly modprobe: ModprobeKind;
  /** /proc/cmdline of the running kernel. */
  readonly cmdline: string;
  /** Changes with every boot: tells whether the host rebooted since it was last read. */
  readonly bootId: string;
  /** Facts that could not be established (for example the NIC under SSH), each with the reason. */
  readonly warnings: readonly string[];
}

/**
 * Each section's shell, all read-only. The root disk and SSH NIC sections print tagged lines
 * ("source ...", "disk <sysfs path>", "nic <name> <sysfs path>") so the parsers can tell "nothing
 * there" from "could not be followed".
 */
export const FACT_SECTIONS = {
  tools: `for tool in lspci ip; do command -v "$tool" >/dev/null && echo "$tool"; done`,
  lspci: "lspci -Dnnk",
  pciSysfs: "ls /sys/bus/pci/devices",
  iommuGroups: "find /sys/kernel/iommu_groups/ -type l",
  // The loop parseUsbDevices documents: resolved sysfs path, idVendor:idProduct, product string.
  usb: `for d in /sys/bus/usb/devices/*; do
  [ -r "$d/idVendor" ] && echo "$(readlink -f "$d") $(cat "$d/idVendor"):$(cat "$d/idProduct") $(cat "$d/product" 2>/dev/null)"
done`,
  // The block device under / (btrfs and /dev/root name no usable device: then the mount's dev_t),
  // down through dm-crypt, LVM and md holders (slaves/) and from partitions to their disk.
  rootDisks: `src=$(findmnt -nvo SOURCE / || awk '$2 == "/" { s = $1 } END { print s }' /proc/mounts)
echo "source $src"
if [ -b "$src" ]; then set -- $(stat -Lc '%t %T' "$src"); dev=$(printf '%d:%d' "0x$1" "0x$2")
else dev=$(mountpoint -d /); fi
[ -e "/sys/dev/block/$dev" ] || exit 0
todo=$(readlink -f "/sys/dev/block/$dev"); todo=\${todo##*/}
while [ -n "$todo" ]; do
  next=
  for name in $todo; do
    path=$(readlink -f "/sys/class/block/$name")
    [ -e "$path/partition" ] && path=\${path%/*}
    slaves=$(ls "$path/slaves" 2>/dev/null)
    if [ -n "$slaves" ]; then next="$next $slaves"; else echo "disk $path"; fi
  done
  todo=$next
done`,
  // SSH_CONNECTION is "client port server port" (sshd(8)); sudo drops it, hence no escalation.
  // Bonds, bridges and VLANs have no device of their own: their lower_* links lead to the ports.
  sshNic: `set -- $SSH_CONNECTION
[ -n "$1" ] || exit 0
echo "client $1"
dev=$(ip route get "$1" | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p' | head -n 1)
echo "route $dev"
todo=$dev
while [ -n "$todo" ]; do
  next=
  for name in $todo; do
    [ -e "/sys/class/net/$name/device" ] && echo "nic $name $(readlink -f "/sys/class/net/$name/device")"
    for lower in "/sys/class/net/$name"/lower_*; do [ -e "$lower" ] && next="$next \${lower##*/lower_}"; done
  done
  todo=$next
done`,
  ...KERNEL_SECTIONS,
  // Alpine's initramfs (mkinitfs) runs busybox modprobe even when kmod is installed on the host.
  // Busybox rejects --version and names itself on the second line of the complaint.
  modprobe: `[ -e /etc/alpine-release ] && echo "alpine $(cat /etc/alpine-release)"
echo "modprobe $(modprobe --version 2>&1 | head -n 2 | tr '\n' ' ')"`,
  cmdline: "cat /proc/cmdline",
  bootId: "cat /proc/sys/kernel/random/boot_id",
} as const;

export type FactSection = keyof typeof FACT_SECTIONS;

/** Reads everything VfioBinding and discovery need about the host, in one SSH command. */
export async function readVfioHostFacts(host: RemoteHost): Promise<VfioHostReading> {
  // Unescalated: every fact is world-readable, and sudo would drop SSH_CONNECTION. A non-root
  // login on Debian has no /usr/sbin in PATH, where modprobe (and on some systems lspci) live.
  const snippets = Object.fromEntries(
    Object.entries(FACT_SECTIONS).map(([name, snippet]) => [name, `PATH="$PATH:/usr/sbin:/sbin"\n${snippet}`]),
  ) as Record<FactSection, string>;
  return parseVfioHostSections(await readSections(host, snippets, { escalate: false }), host.label);
}

/** Tagged lines "<tag> <rest>" of a section, for the sections that print them. */
function tagged(text: string, tag: string): string[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${tag} `))
    .map((line) => line.slice(tag.length + 1).trim());
}

const sortedUnique = (items: readonly string[]): string[] => [...new Set(items)].sort();

export interface RootDisks {
  /** What / is mounted from, as findmnt says: "/dev/mapper/vg-root", "overlay", "rpool/ROOT/debian". */
  readonly source: string;
  /** PCI addresses of the controllers of the disks beneath it. */
  readonly controllers: readonly string[];
  /** Resolved sysfs paths of disks that are not on PCI (virtual, platform). */
  readonly offPci: readonly string[];
}

/** The rootDisks section: "source <src>" then "disk <resolved sysfs path>" per disk. */
export function parseRootDisks(text: string): RootDisks {
  const disks = tagged(text, "disk");
  return {
    source: tagged(text, "source")[0] ?? "",
    controllers: sortedUnique(disks.flatMap((path) => pciAddressOfSysfsPath(path) ?? [])),
    offPci: disks.filter((path) => pciAddressOfSysfsPath(path) === undefined),
  };
}

export interface SshNic {
  /** The SSH client's address from $SSH_CONNECTION; undefined when sshd did not set it. */
  readonly client?: string;
  /** The interface `ip route get <client>` names: "eth0", "br0", "bond0.20". */
  readonly route?: string;
  /** Interfaces with a device beneath the route (the route itself, bond or bridge ports) and their controllers. */
  readonly nics: readonly { readonly name: string; readonly address: string }[];
}

/** The sshNic section: "client <addr>", "route <dev>", then "nic <name> <resolved device path>" per NIC. */
export function parseSshNic(text: string): SshNic {
  const client = tagged(text, "client")[0] || undefined;
  const route = tagged(text, "route")[0] || undefined;
  const nics = tagged(text, "nic").flatMap((line) => {
    const [name, path] = line.split(/\s+/);
    const address = path ? pciAddressOfSysfsPath(path) : undefined;
    return address ? [{ name, address }] : [];
  });
  return { ...(client ? { client } : {}), ...(route ? { route } : {}), nics };
}

/**
 * The modprobe section: Alpine's initramfs runs busybox modprobe; elsewhere the host's modprobe is
 * copied into the initramfs, and `modprobe --version` says "kmod version 30" for kmod.
 */
export function parseModprobeKind(text: string): { kind: ModprobeKind; known: boolean; found: string } {
  const found = tagged(text, "modprobe")[0] ?? "";
  if (tagged(text, "alpine").length > 0 || /busybox/i.test(found)) return { kind: "busybox", known: true, found };
  if (/\bkmod\b/.test(found)) return { kind: "kmod", known: true, found };
  return { kind: "kmod", known: false, found };
}

/** Assembles the reading from each section's stdout. Pure: the unit tests feed it fixture text. */
export function parseVfioHostSections(sections: Record<FactSection, string>, label = "host"): VfioHostReading {
  const tools = new Set(sections.tools.split("\n").map((t) => t.trim()));
  const pciDevices = withIommuGroups(parseLspci(sections.lspci), parseIommuGroups(sections.iommuGroups));
  const listed = new Set(pciDevices.map((d) => d.address));
  const inSysfs = sections.pciSysfs.split(/\s+/).flatMap((name) => normalizePciAddress(name) ?? []);
  const unlisted = inSysfs.filter((address) => !listed.has(address));
  if (unlisted.length > 0) {
    const problem = tools.has("lspci")
      ? `\`lspci -Dnnk\` does not list ${unlisted.length} of the ${inSysfs.length} PCI devices in /sys/bus/pci/devices (e.g. ${unlisted[0]})`
      : `lspci is not installed, so nothing names the ${inSysfs.length} PCI devices in /sys/bus/pci/devices`;
    throw new Error(
      `${label}: ${problem}; install pciutils on the host (apt install pciutils, apk add pciutils: busybox's lspci lacks -D, -nn and -k)`,
    );
  }

  const warnings: string[] = [];
  const root = parseRootDisks(sections.rootDisks);
  if (root.controllers.length === 0) {
    warnings.push(
      `${label}: the root filesystem (${root.source || "source unknown"}) leads to no disk on a PCI controller, so no ` +
        "controller is protected as the root disk's; check by hand that the selection does not hold it (`findmnt /`, `lsblk -s`)",
    );
  } else if (root.offPci.length > 0) {
    warnings.push(`${label}: part of the root filesystem is on ${root.offPci.join(", ")}, which is not on PCI`);
  }

  const ssh = parseSshNic(sections.sshNic);
  if (ssh.nics.length === 0) {
    const why = !ssh.client
      ? "$SSH_CONNECTION is not set"
      : !tools.has("ip")
        ? "`ip` is not installed (iproute2)"
        : !ssh.route
          ? `\`ip route get ${ssh.client}\` named no interface`
          : `${ssh.route} has no PCI device beneath it (a virtual interface)`;
    warnings.push(`${label}: cannot tell which NIC carries this SSH session: ${why}; make sure the selection does not hold it`);
  }

  const kernel = parseNextKernel(sections);
  const running = parseKernelReleases(sections.kernel).running;
  if (kernel.release !== running) {
    warnings.push(`${label}: runs kernel ${running} but boots ${kernel.release} next; its modules are the ones that count`);
  }

  const modprobe = parseModprobeKind(sections.modprobe);
  if (!modprobe.known) {
    warnings.push(`${label}: cannot tell which modprobe the initramfs runs (\`modprobe --version\` said "${modprobe.found}"); assuming kmod`);
  }

  return {
    facts: {
      pciDevices,
      usbDevices: parseUsbDevices(sections.usb),
      rootFilesystemControllers: root.controllers,
      sshNicAddresses: sortedUnique(ssh.nics.map((nic) => nic.address)),
    },
    kernel,
    runningKernel: running,
    modprobe: modprobe.kind,
    cmdline: sections.cmdline.trim(),
    bootId: sections.bootId.trim(),
    warnings,
  };
}
