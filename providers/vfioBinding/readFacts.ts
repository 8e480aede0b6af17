// VfioBinding's facts, read in one SSH round trip: what is on the PCI bus and in which IOMMU group,
// which USB devices hang off which controller, what the host cannot lose (every filesystem, swap
// area and crypttab volume it needs to boot, the path of this SSH session), the kernel that boots
// next, and the CPU and firmware preflight's (kernel/preflight.ts). The shell only prints; every section is parsed by a pure function (hostNeeds.ts).
import { KernelModules } from "../kernel/modules";
import { KERNEL_SECTIONS, NEXT_KERNEL, parseKernelReleases, parseNextKernel } from "../kernel/nextKernel";
import { normalizePciAddress } from "../kernel/pci";
import { parsePreflightSections, PREFLIGHT_SECTIONS, PreflightFacts } from "../kernel/preflight";
import type { RemoteHost } from "../ssh/host";
import { readSections } from "../ssh/sections";
import { parseHostStorage, parseSshPath, sshNeed, storageNeeds, tagged } from "./hostNeeds";
import {
  HostFacts,
  parseIommuGroups,
  parseLspci,
  parseUsbDevices,
  withIommuGroups,
} from "./hostFacts";

export type ModprobeKind = "kmod" | "busybox";

export interface VfioHostReading {
  /** iommuEnabledAtNextBoot is the boot configuration's business: the stack's kernel args decide it. */
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
  /** The CPU, the firmware's IOMMU tables, interrupt remapping and the kernel's IOMMU defaults. */
  readonly preflight: PreflightFacts;
  /** Facts that could not be established (the modprobe kind, a kernel not booted yet), each with the reason. */
  readonly warnings: readonly string[];
}

/**
 * Each section's shell, all read-only. The hostStorage and sshPath sections print tagged lines
 * ("mountinfo …", "block <name> <sysfs path> …", "net <name> <device> …") so the parsers can tell
 * "nothing there" from "could not be followed".
 */
// Links are resolved by `cd -P` and read from $PWD, and small files by `read`, in the shell itself:
// a `$(readlink -f)` or `$(cat)` per entry forks twice, which on a slow host (the lab under TCG)
// costs more than all the other facts together.
export const FACT_SECTIONS = {
  tools: `for tool in lspci ip; do command -v "$tool" >/dev/null && echo "$tool"; done`,
  lspci: "lspci -Dnnk",
  pciSysfs: "ls /sys/bus/pci/devices",
  iommuGroups: "find /sys/kernel/iommu_groups/ -type l",
  // The loop parseUsbDevices documents: resolved sysfs path, idVendor:idProduct, product string.
  usb: `for d in /sys/bus/usb/devices/*; do
  [ -r "$d/idVendor" ] && cd -P "$d" 2>/dev/null || continue
  read -r vendor < idVendor; read -r product_id < idProduct; product=; [ -r product ] && IFS= read -r product < product
  echo "$PWD $vendor:$product_id $product"
done
cd /`,
  // What the host mounts, swaps on and unlocks at boot, and the block layer beneath (slaves/ of
  // dm-crypt, LVM and md; partitions; NVMe multipath subsystems; btrfs members; ZFS vdevs), with the
  // device number of every name those files use (UUID=… through udev's links, else findfs).
  hostStorage: `sed 's/^/mountinfo /' /proc/self/mountinfo
[ -r /etc/fstab ] && sed 's/^/fstab /' /etc/fstab
[ -r /etc/crypttab ] && sed 's/^/crypttab /' /etc/crypttab
sed '1d; s/^/swap /' /proc/swaps
for b in /sys/class/block/*; do
  cd -P "$b" 2>/dev/null || continue
  p=$PWD; kind=whole; [ -e "$p/partition" ] && kind=part
  slaves=; for s in "$p"/slaves/*; do [ -e "$s" ] && slaves="$slaves \${s##*/}"; done
  echo "block \${b##*/} $p $kind$slaves"
done
for d in /sys/dev/block/*; do cd -P "$d" 2>/dev/null && echo "dev \${d##*/} $PWD"; done
for c in /sys/class/nvme-subsystem/*/nvme*; do
  n=\${c##*/}; case \${n#nvme} in *n*) continue ;; esac
  s=\${c%/*}; cd -P "$c" 2>/dev/null && echo "nvmectrl \${s##*/} $PWD"
done
cd /
for d in /sys/fs/btrfs/*/devices/*; do [ -e "$d" ] && { u=\${d%/devices/*}; echo "btrfs \${u##*/} \${d##*/}"; }; done
vdevs=
if command -v zpool >/dev/null; then
  out=$(zpool status -P 2>&1); echo "zpool-exit $?"
  printf '%s\\n' "$out" | sed 's/^/zpool /'
  vdevs=$(printf '%s\\n' "$out" | awk '$1 ~ /^\\// { print $1 }')
fi
{ awk '$1 !~ /^#/ { print $1 }' /etc/fstab; awk '$1 !~ /^#/ { print $2 }' /etc/crypttab; awk 'NR > 1 { print $1 }' /proc/swaps
  sed 's/.* - [^ ]* \\([^ ]*\\) .*/\\1/' /proc/self/mountinfo; printf '%s\\n' "$vdevs"; } 2>/dev/null | sort -u | while read -r spec; do
  case $spec in
    UUID=*|LABEL=*|PARTUUID=*|PARTLABEL=*)
      dev=/dev/disk/by-$(echo "\${spec%%=*}" | tr 'A-Z' 'a-z')/\${spec#*=}; [ -e "$dev" ] || dev=$(findfs "$spec" 2>/dev/null) ;;
    /*) dev=$spec ;;
    *) continue ;;
  esac
  [ -b "$dev" ] && echo "spec $spec $(stat -Lc '%t:%T' "$dev")"
done`,
  // Every interface with its device and lower_* links (bonds, bridges, VLANs); then, for this
  // session, the route to its client (SSH_CONNECTION is "client port server port", sshd(8); sudo
  // drops it, hence no escalation) and the peers of tunnels with the route to each.
  sshPath: `for n in /sys/class/net/*; do
  [ -e "$n" ] || continue
  dev=-; cd -P "$n/device" 2>/dev/null && dev=$PWD
  lowers=; for l in "$n"/lower_*; do [ -e "$l" ] && lowers="$lowers \${l##*/lower_}"; done
  echo "net \${n##*/} $dev$lowers"
done
cd /
set -- $SSH_CONNECTION
[ -n "$1" ] || exit 0
echo "client $1"
command -v ip >/dev/null || exit 0
echo "route $(ip route get "$1" 2>&1 | head -n 1)"
ip -d -o link show | sed 's/^/link /'
peers=$(ip -d -o link show | sed -n 's/.* remote \\([^ ]*\\) .*/\\1/p')
if command -v wg >/dev/null; then
  out=$(wg show all endpoints 2>&1); echo "wg-exit $?"
  printf '%s\\n' "$out" | sed 's/^/wg /'
  peers="$peers $(printf '%s\\n' "$out" | awk '{ sub(/:[0-9]+$/, "", $3); gsub(/[][]/, "", $3); print $3 }')"
fi
for peer in $peers; do echo "peerroute $peer $(ip route get "$peer" 2>&1 | head -n 1)"; done`,
  ...KERNEL_SECTIONS,
  // Alpine's initramfs (mkinitfs) runs busybox modprobe even when kmod is installed on the host.
  // Busybox rejects --version and names itself on the second line of the complaint.
  modprobe: `[ -e /etc/alpine-release ] && echo "alpine $(cat /etc/alpine-release)"
echo "modprobe $(modprobe --version 2>&1 | head -n 2 | tr '\n' ' ')"`,
  bootId: "cat /proc/sys/kernel/random/boot_id",
  // cmdline among them; the kernel config read is the next kernel's ($release).
  ...PREFLIGHT_SECTIONS,
} as const;

export type FactSection = keyof typeof FACT_SECTIONS;

/** Reads everything VfioBinding and discovery need about the host, in one SSH command. */
export async function readVfioHostFacts(host: RemoteHost): Promise<VfioHostReading> {
  // Unescalated: every fact is world-readable, and sudo would drop SSH_CONNECTION.
  return parseVfioHostSections(await readSections(host, FACT_SECTIONS, { escalate: false, prelude: NEXT_KERNEL }), host.label);
}

/**
 * The modprobe section: Alpine's initramfs runs busybox modprobe; elsewhere the host's modprobe is
 * copied into the initramfs, and `modprobe --version` says "kmod version 30" for kmod.
 */
export function parseModprobeKind(text: string): { kind: ModprobeKind; known: boolean; found: string } {
  const found = (tagged(text, "modprobe")[0] ?? "").trim();
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
      hostNeeds: [...storageNeeds(parseHostStorage(sections.hostStorage)), sshNeed(parseSshPath(sections.sshPath), tools.has("ip"))],
    },
    kernel,
    runningKernel: running,
    modprobe: modprobe.kind,
    cmdline: sections.cmdline.trim(),
    bootId: sections.bootId.trim(),
    preflight: parsePreflightSections(sections),
    warnings,
  };
}
