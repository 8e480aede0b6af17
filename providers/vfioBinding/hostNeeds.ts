// What the host needs to boot and to stay reachable, traced down to the PCI functions it rests on:
// the filesystems it mounts at boot, its swap, its crypttab volumes and the path of this SSH
// session. readFacts.ts prints the raw material (sections hostStorage and sshPath); everything
// here is pure. What cannot be traced is kept with the reason, so the selection can fail closed.
import { pciAddressOfSysfsPath } from "./hostFacts";

export interface HostNeed {
  readonly kind: "mount" | "swap" | "crypttab" | "ssh";
  /** Its name in `acknowledgeUnresolvedHostDevices`: "/boot/efi", "swap:/dev/sda2", "crypttab:cryptdata", "ssh". */
  readonly name: string;
  /** For messages: "/boot/efi on vfat /dev/sda1", "swap on /dev/sda2", "crypttab's cryptdata on UUID=…", "the SSH session from 192.0.2.7". */
  readonly what: string;
  /** The PCI functions it rests on: every disk of a mirror or pool, every port of a bond. */
  readonly controllers: readonly string[];
  /** Why it, or a part of it, could not be traced to PCI functions; empty when it was. */
  readonly unresolved: readonly string[];
}

/** The key that acknowledges what the guard could not trace. */
export const ACKNOWLEDGE_KEY = "acknowledgeUnresolvedHostDevices";

/** "/ on zfs rpool/ROOT/debian cannot be traced to PCI devices: `zpool` is not installed, …". */
export const untracedProblem = (need: HostNeed): string => `${need.what} cannot be traced to PCI devices: ${need.unresolved.join("; ")}`;

/** The refusal for a need that could not be traced: what, why, and the key that acknowledges it. */
export function describeUnresolved(need: HostNeed): string {
  const [purpose, parts] = need.kind === "ssh" ? ["stay reachable", "the devices it travels over"] : ["boot", "its disks' controllers"];
  return (
    `${untracedProblem(need)}. The host needs it to ${purpose}: check by hand that the selection holds none of ${parts}, ` +
    `then add "${need.name}" to \`${ACKNOWLEDGE_KEY}\``
  );
}

interface Trace {
  readonly controllers: readonly string[];
  readonly unresolved: readonly string[];
}

const traced = (...controllers: string[]): Trace => ({ controllers, unresolved: [] });
const untraced = (reason: string): Trace => ({ controllers: [], unresolved: [reason] });
const sortedUnique = (items: readonly string[]): string[] => [...new Set(items)].sort();
const together = (traces: readonly Trace[]): Trace => ({
  controllers: sortedUnique(traces.flatMap((t) => t.controllers)),
  unresolved: [...new Set(traces.flatMap((t) => t.unresolved))],
});

/** Tagged lines "<tag> <rest>" of a section. */
export function tagged(text: string, tag: string): string[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${tag} `))
    .map((line) => line.slice(tag.length + 1));
}

/** Mount tables escape blanks and backslashes as octal (\040): getmntent(3), proc(5). */
const unescapeOctal = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
const fields = (line: string) => line.trim().split(/\s+/).filter((f) => f !== "");
const meaningful = (lines: readonly string[]) => lines.map(fields).filter((f) => f.length > 0 && !f[0].startsWith("#"));

interface Mount {
  readonly mountpoint: string;
  readonly fstype: string;
  readonly source: string;
  readonly options: readonly string[];
  /** "8:3" from mountinfo; absent for fstab entries. */
  readonly device?: string;
}

type Zpool = { state: "absent" } | { state: "failed"; message: string } | { state: "ok"; pools: ReadonlyMap<string, readonly string[]> };

export interface HostStorage {
  /** The mount table (/proc/self/mountinfo), the topmost mount per mount point last. */
  readonly mounted: readonly Mount[];
  readonly fstab: readonly Mount[];
  readonly crypttab: readonly { name: string; source: string; options: readonly string[] }[];
  /** /proc/swaps: the swap area and whether it is a file. */
  readonly swaps: readonly { file: string; isFile: boolean }[];
  /** /sys/class/block: resolved path, whether a partition, and the devices beneath (slaves/). */
  readonly blocks: ReadonlyMap<string, { path: string; partition: boolean; slaves: readonly string[] }>;
  /** /sys/dev/block: "major:minor" to the block device's name. */
  readonly numbers: ReadonlyMap<string, string>;
  /** A device name as the files above write it (/dev/sda2, UUID=…, a vdev path) to "major:minor". */
  readonly specs: ReadonlyMap<string, string>;
  /** NVMe subsystem to the resolved paths of its controllers. */
  readonly nvmeControllers: ReadonlyMap<string, readonly string[]>;
  /** A btrfs member device's name to every member of the same filesystem. */
  readonly btrfsMembers: ReadonlyMap<string, readonly string[]>;
  readonly zpool: Zpool;
}

/**
 * `zpool status -P`: "pool: <name>" starts a pool; in its config, every leaf vdev (data, log,
 * cache, spare) is a line whose first word is a device path.
 */
export function parseZpoolStatus(text: string): Map<string, string[]> {
  const pools = new Map<string, string[]>();
  let pool: string | undefined;
  for (const line of text.split("\n")) {
    const header = /^\s*pool:\s*(\S+)/.exec(line);
    if (header) {
      pool = header[1];
      pools.set(pool, []);
      continue;
    }
    const first = fields(line)[0];
    if (pool && first?.startsWith("/")) pools.get(pool)?.push(first);
  }
  return pools;
}

/** The hostStorage section of readFacts.ts: one tagged line per fact. */
export function parseHostStorage(text: string): HostStorage {
  const mounted = tagged(text, "mountinfo").flatMap((line): Mount[] => {
    // proc(5): id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const f = fields(line);
    const dash = f.indexOf("-", 6);
    if (f.length < 5 || dash < 0) return [];
    return [{ mountpoint: unescapeOctal(f[4]), fstype: f[dash + 1], source: unescapeOctal(f[dash + 2] ?? ""), options: f[5].split(","), device: f[2] }];
  });
  const fstab = meaningful(tagged(text, "fstab"))
    .filter((f) => f.length >= 3)
    .map(([spec, file, fstype, options = "defaults"]): Mount => ({ mountpoint: unescapeOctal(file), fstype, source: unescapeOctal(spec), options: options.split(",") }));
  const crypttab = meaningful(tagged(text, "crypttab"))
    .filter((f) => f.length >= 2)
    .map(([name, source, , options = ""]) => ({ name, source, options: options.split(",") }));
  const swaps = tagged(text, "swap").flatMap((line) => {
    const [file, type] = fields(line);
    return file ? [{ file: unescapeOctal(file), isFile: type === "file" }] : [];
  });
  const blocks = new Map(
    tagged(text, "block").flatMap((line) => {
      const [name, path, kind, ...slaves] = fields(line);
      return path ? [[name, { path, partition: kind === "part", slaves }] as const] : [];
    }),
  );
  const basename = (path: string) => path.slice(path.lastIndexOf("/") + 1);
  const numbers = new Map(tagged(text, "dev").flatMap((line) => {
    const [number, path] = fields(line);
    return path ? [[number, basename(path)] as const] : [];
  }));
  // stat(1) %t:%T prints the major and minor in hex.
  const specs = new Map(tagged(text, "spec").flatMap((line) => {
    const [spec, hex] = fields(line);
    const [major, minor] = (hex ?? "").split(":").map((h) => parseInt(h, 16));
    return Number.isInteger(major) && Number.isInteger(minor) ? [[spec, `${major}:${minor}`] as const] : [];
  }));
  const nvmeControllers = new Map<string, string[]>();
  for (const [subsystem, path] of tagged(text, "nvmectrl").map(fields)) {
    if (path) nvmeControllers.set(subsystem, [...(nvmeControllers.get(subsystem) ?? []), path]);
  }
  const filesystems = new Map<string, string[]>();
  for (const [uuid, member] of tagged(text, "btrfs").map(fields)) {
    if (member) filesystems.set(uuid, [...(filesystems.get(uuid) ?? []), member]);
  }
  const btrfsMembers = new Map([...filesystems.values()].flatMap((members) => members.map((m) => [m, members] as const)));
  const exit = tagged(text, "zpool-exit")[0];
  const zpoolText = tagged(text, "zpool").join("\n");
  const zpool: Zpool =
    exit === undefined
      ? { state: "absent" }
      : exit.trim() !== "0"
        ? { state: "failed", message: zpoolText.trim().split("\n")[0] || `exit status ${exit.trim()}` }
        : { state: "ok", pools: parseZpoolStatus(zpoolText) };
  return { mounted, fstab, crypttab, swaps, blocks, numbers, specs, nvmeControllers, btrfsMembers, zpool };
}

/** Mount points a host cannot come up without, whether or not fstab lists them. */
export const BOOT_MOUNTPOINTS = ["/", "/boot", "/boot/efi", "/efi", "/usr", "/var"];
/** Filesystems that live in memory: they need no device at all. */
const MEMORY_FILESYSTEMS = new Set(["tmpfs", "ramfs"]);
/** Network filesystems: they rest on a NIC and a server, not on a disk of this host. */
const NETWORK_FILESYSTEMS = new Set(["nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "sshfs", "lustre", "9p", "davfs", "fuse.s3fs"]);
/** Filesystems the kernel or a layer above other mounts provides; an fstab line for one names no device. */
const KERNEL_FILESYSTEMS = new Set([
  "proc", "sysfs", "devpts", "devtmpfs", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "efivarfs", "hugetlbfs",
  "mqueue", "bpf", "pstore", "configfs", "fusectl", "binfmt_misc", "autofs", "rpc_pipefs", "nfsd", "overlay", "none", "swap",
]);

const isNetwork = (m: Mount) => NETWORK_FILESYSTEMS.has(m.fstype) || m.options.includes("_netdev");

/**
 * Which fstab lines the host mounts at boot from a disk of its own: not `noauto`, not swap (its
 * active areas come from /proc/swaps), not a bind mount (its filesystem is its own line), not a
 * kernel or in-memory filesystem, and not on the network unless it is a boot mount point. systemd
 * drops to emergency mode when a local mount fails (local-fs.target, OnFailure=emergency.target),
 * while a failed network mount only fails remote-fs.target; `nofail` lines are kept, since a guest
 * handed their disk could write a filesystem the host still names.
 */
export function bootMounts(fstab: readonly Mount[]): Mount[] {
  return fstab.filter(
    (m) =>
      !m.options.includes("noauto") &&
      !m.options.includes("bind") &&
      !m.options.includes("rbind") &&
      !MEMORY_FILESYSTEMS.has(m.fstype) &&
      !KERNEL_FILESYSTEMS.has(m.fstype) &&
      (!isNetwork(m) || BOOT_MOUNTPOINTS.includes(m.mountpoint)),
  );
}

/** Traces every storage need of the host to the PCI functions of its disks. */
export function storageNeeds(storage: HostStorage): HostNeed[] {
  const deviceNamed = (spec: string): string | undefined => {
    const number = storage.specs.get(spec);
    return number === undefined ? undefined : storage.numbers.get(number);
  };

  const traceBlock = (name: string, seen: ReadonlySet<string> = new Set()): Trace => {
    const block = storage.blocks.get(name);
    if (!block) return untraced(`${name} is not in /sys/class/block`);
    if (seen.has(name)) return traced();
    // dm-crypt, LVM and md devices rest on their slaves; a partition on its disk.
    if (block.slaves.length > 0) return together(block.slaves.map((slave) => traceBlock(slave, new Set([...seen, name]))));
    const disk = block.partition ? block.path.slice(0, block.path.lastIndexOf("/")) : block.path;
    const diskName = disk.slice(disk.lastIndexOf("/") + 1);
    // NVMe native multipath: the namespace's head is a virtual device of its subsystem, reached through every controller.
    const subsystem = /\/nvme-subsystem\/([^/]+)\//.exec(disk)?.[1];
    if (subsystem) {
      const controllers = (storage.nvmeControllers.get(subsystem) ?? []).flatMap((path) => pciAddressOfSysfsPath(path) ?? []);
      return controllers.length > 0
        ? traced(...controllers)
        : untraced(`/dev/${diskName} is a namespace of ${subsystem}, which lists no controller on PCI`);
    }
    const address = pciAddressOfSysfsPath(disk);
    if (address) return traced(address);
    if (/\/virtual\/block\/(zram|ram)\d+$/.test(disk)) return traced(); // compressed RAM: no device to lose
    return untraced(`/dev/${diskName} is not on PCI (${disk})`);
  };

  const traceZfs = (dataset: string): Trace => {
    const pool = dataset.split("/")[0];
    const unknown = `so the vdevs of pool ${pool} are unknown`;
    if (storage.zpool.state === "absent") return untraced(`\`zpool\` is not installed, ${unknown}`);
    if (storage.zpool.state === "failed") return untraced(`\`zpool status -P\` failed (${storage.zpool.message}), ${unknown}`);
    const vdevs = storage.zpool.pools.get(pool);
    if (!vdevs || vdevs.length === 0) return untraced(`\`zpool status -P\` lists no vdev of pool ${pool}`);
    return together(vdevs.map((vdev) => {
      const name = deviceNamed(vdev);
      return name ? traceBlock(name) : untraced(`vdev ${vdev} of pool ${pool} is not a block device on the host`);
    }));
  };

  const traceMount = (m: Mount): Trace => {
    if (MEMORY_FILESYSTEMS.has(m.fstype)) return traced();
    if (m.fstype === "zfs") return traceZfs(m.source);
    if (isNetwork(m)) return untraced(`it is on the network (${m.fstype}${m.options.includes("_netdev") ? ", _netdev" : ""})`);
    // The mount's own device number, else its source's: btrfs reports an anonymous device number.
    const fromNumber = m.device === undefined ? undefined : storage.numbers.get(m.device);
    const name = fromNumber ?? deviceNamed(m.source);
    if (!name) return untraced(`${m.source} is not a block device on the host`);
    const members = m.fstype === "btrfs" ? (storage.btrfsMembers.get(name) ?? [name]) : [name];
    return together(members.map((member) => traceBlock(member)));
  };

  const topmost = new Map(storage.mounted.map((m) => [m.mountpoint, m]));
  const atBoot = bootMounts(storage.fstab);
  const mountpoints = [...new Set([...BOOT_MOUNTPOINTS.filter((p) => topmost.has(p)), ...atBoot.map((m) => m.mountpoint)])];
  const mounts = mountpoints.map((mountpoint): HostNeed => {
    // What is mounted now and what fstab mounts at the next boot: both must survive it.
    const now = topmost.get(mountpoint);
    const listed = atBoot.find((m) => m.mountpoint === mountpoint);
    const on = (m: Mount) => `${m.fstype} ${m.source}`;
    const what = !now ? on(listed!) : listed && listed.fstype !== now.fstype ? `${on(now)} (fstab: ${on(listed)})` : on(now);
    const trace = together([now, listed].flatMap((m) => (m ? [traceMount(m)] : [])));
    return { kind: "mount", name: mountpoint, what: `${mountpoint} on ${what}`, ...trace };
  });

  // A swap file is as safe as the filesystem holding it: the longest mount point above it.
  const holder = (file: string) =>
    [...topmost.values()].filter((m) => file.startsWith(m.mountpoint === "/" ? "/" : `${m.mountpoint}/`)).sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0];
  const swaps = storage.swaps.map(({ file, isFile }): HostNeed => {
    const mount = isFile ? holder(file) : undefined;
    const name = isFile ? undefined : deviceNamed(file);
    const trace = isFile
      ? mount ? traceMount(mount) : untraced(`no mount holds ${file}`)
      : name ? traceBlock(name) : untraced(`${file} is not a block device on the host`);
    return { kind: "swap", name: `swap:${file}`, what: `swap on ${file}`, ...trace };
  });

  const volumes = storage.crypttab
    .filter((entry) => !entry.options.includes("noauto"))
    .map((entry): HostNeed => {
      const name = deviceNamed(entry.source);
      const trace = name ? traceBlock(name) : untraced(`${entry.source} is not a block device on the host`);
      return { kind: "crypttab", name: `crypttab:${entry.name}`, what: `crypttab's ${entry.name} on ${entry.source}`, ...trace };
    });

  return [...mounts, ...swaps, ...volumes];
}

type Wg = { state: "absent" } | { state: "failed"; message: string } | { state: "ok"; endpoints: ReadonlyMap<string, readonly string[]> };

export interface SshPath {
  /** The SSH client's address from $SSH_CONNECTION; undefined when sshd did not set it. */
  readonly client?: string;
  /** `ip route get <client>`'s first line, as printed. */
  readonly route?: string;
  /** /sys/class/net: each interface's resolved device path (none for virtual ones) and lower_* links. */
  readonly interfaces: ReadonlyMap<string, { device?: string; lowers: readonly string[] }>;
  /** Tunnel remotes `ip -d -o link show` names (gre, ipip, vxlan…), by interface. */
  readonly remotes: ReadonlyMap<string, readonly string[]>;
  /** WireGuard peers' endpoint addresses, by interface (`wg show all endpoints`). */
  readonly wg: Wg;
  /** `ip route get <peer>`'s first line for every tunnel peer. */
  readonly peerRoutes: ReadonlyMap<string, string>;
}

/** An endpoint as wg prints it ("198.51.100.7:51820", "[2001:db8::1]:51820") without its port. */
const endpointAddress = (endpoint: string) => endpoint.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");

/** The sshPath section of readFacts.ts. */
export function parseSshPath(text: string): SshPath {
  const interfaces = new Map(
    tagged(text, "net").flatMap((line) => {
      const [name, device, ...lowers] = fields(line);
      return name ? [[name, { ...(device && device !== "-" ? { device } : {}), lowers }] as const] : [];
    }),
  );
  const remotes = new Map<string, string[]>();
  for (const line of tagged(text, "link")) {
    // "5: gre1@NONE: <POINTOPOINT,…> … gre remote 198.51.100.7 local …"
    const name = /^\d+:\s*([^:@\s]+)/.exec(line)?.[1];
    const remote = /\sremote (\S+)/.exec(line)?.[1];
    if (name && remote && remote !== "any") remotes.set(name, [...(remotes.get(name) ?? []), remote]);
  }
  const exit = tagged(text, "wg-exit")[0];
  const wgLines = tagged(text, "wg");
  const endpoints = new Map<string, string[]>();
  for (const [name, , endpoint] of wgLines.map(fields)) {
    if (name && endpoint && endpoint !== "(none)") endpoints.set(name, [...(endpoints.get(name) ?? []), endpointAddress(endpoint)]);
  }
  const wg: Wg =
    exit === undefined
      ? { state: "absent" }
      : exit.trim() !== "0"
        ? { state: "failed", message: wgLines.join(" ").trim() || `exit status ${exit.trim()}` }
        : { state: "ok", endpoints };
  const peerRoutes = new Map(tagged(text, "peerroute").flatMap((line) => {
    const space = line.indexOf(" ");
    return space > 0 ? [[line.slice(0, space), line.slice(space + 1)] as const] : [];
  }));
  const client = tagged(text, "client")[0]?.trim() || undefined;
  const route = tagged(text, "route")[0];
  return { ...(client ? { client } : {}), ...(route !== undefined ? { route } : {}), interfaces, remotes, wg, peerRoutes };
}

const routeDevice = (route: string | undefined) => (route === undefined ? undefined : /\bdev (\S+)/.exec(route)?.[1]);

/** Traces this SSH session from the interface its replies leave by down to NICs on PCI. */
export function sshNeed(path: SshPath, hasIp: boolean): HostNeed {
  const need = { kind: "ssh", name: "ssh", what: path.client ? `the SSH session from ${path.client}` : "the SSH session" } as const;
  const done = (trace: Trace): HostNeed => ({ ...need, ...trace });
  if (!path.client) return done(untraced("$SSH_CONNECTION is not set (sshd sets it; logging in through `su` or `sudo` drops it)"));
  if (!hasIp) return done(untraced("`ip` is not installed (iproute2), so nothing names the interface it arrives on"));
  const first = routeDevice(path.route);
  if (!first) return done(untraced(`\`ip route get ${path.client}\` named no interface (${(path.route ?? "").trim() || "no output"})`));

  const peersUnknown = (name: string) =>
    path.wg.state === "absent"
      ? "`wg` is not installed, and `ip -d link show` names no remote"
      : path.wg.state === "failed"
        ? `\`wg show all endpoints\` failed: ${path.wg.message}`
        : `neither \`wg show all endpoints\` nor \`ip -d link show\` names one for ${name}`;

  /** A trace, and whether it ended on an interface with nothing beneath it and no known peer. */
  type Hop = Trace & { readonly deadEnd?: boolean };
  const traceInterface = (name: string, through: readonly string[]): Hop => {
    const found = path.interfaces.get(name);
    if (found?.device) {
      const address = pciAddressOfSysfsPath(found.device);
      return address ? traced(address) : untraced(`it arrives on ${name}, whose device ${found.device} is not on PCI`);
    }
    // Bonds, bridges and VLANs have no device of their own: their lower_* links lead to the ports.
    // A bridge's guest taps and container veths are dead ends, not the way in, once a port leads somewhere.
    if (found && found.lowers.length > 0) {
      const ports = found.lowers.map((lower) => traceInterface(lower, through));
      const live = ports.filter((port) => !port.deadEnd);
      return { ...together(live.length > 0 ? live : ports), deadEnd: live.length === 0 };
    }
    // Nothing beneath: a tunnel (WireGuard, GRE, tun), carried by whatever reaches its peer.
    const peers = [...(path.remotes.get(name) ?? []), ...(path.wg.state === "ok" ? (path.wg.endpoints.get(name) ?? []) : [])];
    if (peers.length === 0) {
      const reason = `it arrives on ${name}, which has no PCI device beneath it and whose peer endpoint is unknown (${peersUnknown(name)})`;
      return { ...untraced(reason), deadEnd: true };
    }
    return together(peers.map((peer) => {
      const next = routeDevice(path.peerRoutes.get(peer));
      if (!next) return untraced(`\`ip route get ${peer}\` (the peer of ${name}) named no interface`);
      if (next === name || through.includes(next)) return untraced(`the route to ${name}'s peer ${peer} leads back into ${next}`);
      return traceInterface(next, [...through, name]);
    }));
  };
  const { controllers, unresolved } = traceInterface(first, []);
  return done({ controllers, unresolved });
}
