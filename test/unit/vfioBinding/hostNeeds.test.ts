import {
  bootMounts,
  describeUnresolved,
  HostNeed,
  parseHostStorage,
  parseSshPath,
  parseZpoolStatus,
  sshNeed,
  storageNeeds,
} from "../../../providers/vfioBinding/hostNeeds";

// Sysfs paths as the kernel resolves them.
const AHCI = "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda";
const AHCI_2 = "/sys/devices/pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sdb";
const NVME = "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1";
const ISCSI = "/sys/devices/platform/host3/session1/target3:0:0/3:0:0:0/block/sdc";

/** hostStorage section lines for a disk and its partitions: "block" and "dev" lines, numbered from `major:minor`. */
function disk(path: string, number: string, partitions: number[] = []): string[] {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const [major, minor] = number.split(":").map(Number);
  const part = (n: number) => `${name}${name.startsWith("nvme") ? "p" : ""}${n}`;
  return [
    `block ${name} ${path} whole`,
    `dev ${number} ${path}`,
    ...partitions.flatMap((n) => [`block ${part(n)} ${path}/${part(n)} part`, `dev ${major}:${minor + n} ${path}/${part(n)}`]),
  ];
}
const mountinfo = (mountpoint: string, number: string, fstype: string, source: string) =>
  `mountinfo 30 1 ${number} / ${mountpoint} rw,relatime shared:1 - ${fstype} ${source} rw`;
const spec = (name: string, number: string) => `spec ${name} ${number.split(":").map((n) => Number(n).toString(16)).join(":")}`;
const needs = (lines: string[]) => storageNeeds(parseHostStorage(lines.join("\n") + "\n"));
const byName = (list: HostNeed[]) => Object.fromEntries(list.map((n) => [n.name, { controllers: n.controllers, unresolved: n.unresolved }]));

/** `zpool status -P` of Proxmox's default install on two disks: rpool mirrored over partition 3 of each. */
const proxmoxZpoolStatus = [
  "  pool: rpool",
  " state: ONLINE",
  "config:",
  "",
  "\tNAME                                                  STATE     READ WRITE CKSUM",
  "\trpool                                                 ONLINE       0     0     0",
  "\t  mirror-0                                            ONLINE       0     0     0",
  "\t    /dev/disk/by-id/ata-Samsung_SSD_870_EVO_1TB-part3  ONLINE       0     0     0",
  "\t    /dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB-part3  ONLINE       0     0     0",
  "",
  "errors: No known data errors",
];

describe("parseZpoolStatus", () => {
  it("takes every leaf vdev of every pool, logs, caches and spares included", () => {
    const text = [
      ...proxmoxZpoolStatus,
      "",
      "  pool: tank",
      " state: ONLINE",
      "config:",
      "\tNAME           STATE     READ WRITE CKSUM",
      "\ttank           ONLINE       0     0     0",
      "\t  raidz1-0     ONLINE       0     0     0",
      "\t    /dev/sdc1  ONLINE       0     0     0",
      "\t    /dev/sdd1  ONLINE       0     0     0",
      "\tlogs",
      "\t  /dev/nvme1n1p1  ONLINE       0     0     0",
      "\tcache",
      "\t  /dev/nvme1n1p2  ONLINE       0     0     0",
      "\tspares",
      "\t  /dev/sde1    AVAIL",
    ].join("\n");
    expect(parseZpoolStatus(text)).toEqual(
      new Map([
        ["rpool", ["/dev/disk/by-id/ata-Samsung_SSD_870_EVO_1TB-part3", "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB-part3"]],
        ["tank", ["/dev/sdc1", "/dev/sdd1", "/dev/nvme1n1p1", "/dev/nvme1n1p2", "/dev/sde1"]],
      ]),
    );
  });
});

describe("storageNeeds", () => {
  it("traces Proxmox's ZFS root through its pool's vdevs to both controllers", () => {
    const host = [
      mountinfo("/", "0:25", "zfs", "rpool/ROOT/pve-1"),
      mountinfo("/proc", "0:22", "proc", "proc"),
      "fstab # <file system> <mount point> <type> <options> <dump> <pass>",
      "fstab proc /proc proc defaults 0 0",
      ...disk(AHCI, "8:0", [1, 2, 3]),
      ...disk(NVME, "259:0", [1, 2, 3]),
      "zpool-exit 0",
      ...proxmoxZpoolStatus.map((line) => `zpool ${line}`),
      spec("/dev/disk/by-id/ata-Samsung_SSD_870_EVO_1TB-part3", "8:3"),
      spec("/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB-part3", "259:3"),
    ];
    expect(needs(host)).toEqual([
      { kind: "mount", name: "/", what: "/ on zfs rpool/ROOT/pve-1", controllers: ["0000:00:17.0", "0000:3d:00.0"], unresolved: [] },
    ]);
  });

  it("says why a ZFS pool could not be traced: no zpool, zpool failing, pool or vdev unknown", () => {
    const root = [mountinfo("/", "0:25", "zfs", "rpool/ROOT/pve-1"), ...disk(AHCI, "8:0", [3])];
    const reasonFor = (lines: string[]) => needs([...root, ...lines])[0].unresolved;
    expect(reasonFor([])).toEqual(["`zpool` is not installed, so the vdevs of pool rpool are unknown"]);
    expect(reasonFor(["zpool-exit 1", "zpool The ZFS modules are not loaded.", "zpool Try running '/sbin/modprobe zfs' as root to load them."])).toEqual([
      "`zpool status -P` failed (The ZFS modules are not loaded.), so the vdevs of pool rpool are unknown",
    ]);
    expect(reasonFor(["zpool-exit 0", "zpool no pools available"])).toEqual(["`zpool status -P` lists no vdev of pool rpool"]);
    expect(reasonFor(["zpool-exit 0", "zpool   pool: rpool", "zpool \t    /dev/sda3  ONLINE 0 0 0", "zpool \t    /dev/sdq3  UNAVAIL 0 0 0", spec("/dev/sda3", "8:3")])).toEqual([
      "vdev /dev/sdq3 of pool rpool is not a block device on the host",
    ]);
  });

  it("traces an NVMe multipath namespace through every controller of its subsystem", () => {
    const head = "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1";
    const host = [
      mountinfo("/", "259:2", "ext4", "/dev/nvme0n1p2"),
      ...disk(head, "259:0", [1, 2]),
      "nvmectrl nvme-subsys0 /sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0",
      "nvmectrl nvme-subsys0 /sys/devices/pci0000:00/0000:00:1c.0/0000:3e:00.0/nvme/nvme1",
    ];
    expect(byName(needs(host))).toEqual({ "/": { controllers: ["0000:3d:00.0", "0000:3e:00.0"], unresolved: [] } });
    expect(byName(needs(host.slice(0, -2)))).toEqual({
      "/": { controllers: [], unresolved: ["/dev/nvme0n1 is a namespace of nvme-subsys0, which lists no controller on PCI"] },
    });
  });

  it("follows LVM on dm-crypt on RAID down to every disk, once each", () => {
    const host = [
      mountinfo("/", "253:1", "ext4", "/dev/mapper/vg0-root"),
      "block dm-1 /sys/devices/virtual/block/dm-1 whole dm-0",
      "block dm-0 /sys/devices/virtual/block/dm-0 whole md0",
      "block md0 /sys/devices/virtual/block/md0 whole sda2 nvme0n1p2 sdb2",
      "dev 253:1 /sys/devices/virtual/block/dm-1",
      ...disk(AHCI, "8:0", [2]),
      ...disk(AHCI_2, "8:16", [2]),
      ...disk(NVME, "259:0", [2]),
    ];
    expect(byName(needs(host))).toEqual({ "/": { controllers: ["0000:00:17.0", "0000:3d:00.0"], unresolved: [] } });
  });

  it("traces every member of a btrfs filesystem, whose mount has an anonymous device number", () => {
    const host = [
      mountinfo("/", "0:33", "btrfs", "/dev/sda2"),
      ...disk(AHCI, "8:0", [2]),
      ...disk(NVME, "259:0", [2]),
      spec("/dev/sda2", "8:2"),
      "btrfs 5d1e6c1a-7a0c-4c1e-9d35-0f3c8b1f2e11 sda2",
      "btrfs 5d1e6c1a-7a0c-4c1e-9d35-0f3c8b1f2e11 nvme0n1p2",
    ];
    expect(byName(needs(host))).toEqual({ "/": { controllers: ["0000:00:17.0", "0000:3d:00.0"], unresolved: [] } });
  });

  it("names the USB controller of a root filesystem on a USB stick", () => {
    const stick = "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb";
    expect(byName(needs([mountinfo("/", "8:18", "ext4", "/dev/sdb2"), ...disk(stick, "8:16", [2])]))).toEqual({
      "/": { controllers: ["0000:00:14.0"], unresolved: [] },
    });
  });

  it("cannot trace an NFS, iSCSI or overlay root, nor a device the host does not have", () => {
    expect(byName(needs([mountinfo("/", "0:50", "nfs4", "server:/export/root")]))["/"].unresolved).toEqual(["it is on the network (nfs4)"]);
    expect(byName(needs([mountinfo("/", "8:33", "ext4", "/dev/sdc1"), ...disk(ISCSI, "8:32", [1])]))["/"].unresolved).toEqual([`/dev/sdc is not on PCI (${ISCSI})`]);
    expect(byName(needs([mountinfo("/", "0:31", "overlay", "overlay")]))["/"].unresolved).toEqual(["overlay is not a block device on the host"]);
    expect(byName(needs([mountinfo("/", "8:3", "ext4", "/dev/sda3"), "dev 8:3 /sys/devices/x/sda3"]))["/"].unresolved).toEqual(["sda3 is not in /sys/class/block"]);
  });

  it("needs what fstab mounts at boot, from a disk of its own, and what is mounted on the boot mount points", () => {
    const host = [
      mountinfo("/", "8:3", "ext4", "/dev/sda3"),
      mountinfo("/boot", "8:2", "ext4", "/dev/sda2"),
      mountinfo("/run", "0:24", "tmpfs", "tmpfs"),
      mountinfo("/srv/media", "0:51", "nfs4", "nas:/media"),
      "fstab UUID=0e4f5c2a-3b1d-4f6e-8a7c-9d0b1e2f3a4b / ext4 errors=remount-ro 0 1",
      "fstab UUID=7A1B-2C3D /boot/efi vfat umask=0077 0 1",
      "fstab /dev/sdb1 /srv/backup ext4 defaults,nofail 0 2",
      "fstab /dev/sdb2 /mnt/usb ext4 noauto 0 0",
      "fstab /srv/backup/www /var/www none bind 0 0",
      "fstab nas:/media /srv/media nfs4 defaults 0 0",
      "fstab /dev/sdc1 /srv/iscsi ext4 _netdev 0 0",
      "fstab tmpfs /tmp tmpfs defaults 0 0",
      "fstab /dev/sda4 none swap sw 0 0",
      "fstab server:/efi /efi nfs defaults 0 0",
      ...disk(AHCI, "8:0", [1, 2, 3]),
      ...disk(NVME, "259:0", [1]),
      spec("UUID=0e4f5c2a-3b1d-4f6e-8a7c-9d0b1e2f3a4b", "8:3"),
      spec("UUID=7A1B-2C3D", "259:1"),
      spec("/dev/sdb1", "8:17"),
      ...disk(AHCI_2, "8:16", [1]),
    ];
    const found = needs(host);
    expect(found.map((n) => n.what)).toEqual([
      "/ on ext4 /dev/sda3",
      "/boot on ext4 /dev/sda2",
      "/boot/efi on vfat UUID=7A1B-2C3D",
      "/srv/backup on ext4 /dev/sdb1",
      "/efi on nfs server:/efi",
    ]);
    expect(byName(found)).toEqual({
      "/": { controllers: ["0000:00:17.0"], unresolved: [] },
      "/boot": { controllers: ["0000:00:17.0"], unresolved: [] },
      "/boot/efi": { controllers: ["0000:3d:00.0"], unresolved: [] },
      "/srv/backup": { controllers: ["0000:00:17.0"], unresolved: [] },
      "/efi": { controllers: [], unresolved: ["it is on the network (nfs)"] },
    });
  });

  it("keeps a boot mount point whose fstab line names a device the host lacks, apart from what is mounted there now", () => {
    const host = [
      mountinfo("/boot/efi", "8:1", "vfat", "/dev/sda1"),
      "fstab UUID=DEAD-BEEF /boot/efi vfat umask=0077 0 1",
      ...disk(AHCI, "8:0", [1]),
    ];
    expect(byName(needs(host))["/boot/efi"]).toEqual({ controllers: ["0000:00:17.0"], unresolved: ["UUID=DEAD-BEEF is not a block device on the host"] });
    const zfsNextBoot = [mountinfo("/", "8:1", "ext4", "/dev/sda1"), "fstab rpool/ROOT/debian / zfs defaults 0 0", ...disk(AHCI, "8:0", [1])];
    expect(needs(zfsNextBoot)[0]).toMatchObject({ what: "/ on ext4 /dev/sda1 (fstab: zfs rpool/ROOT/debian)", controllers: ["0000:00:17.0"] });
  });

  it("needs every active swap area: a partition, a file through its filesystem, zram through nothing", () => {
    const host = [
      mountinfo("/", "8:3", "ext4", "/dev/sda3"),
      mountinfo("/var", "259:1", "xfs", "/dev/nvme0n1p1"),
      "swap /dev/sda2                               partition\t8388604\t0\t-2",
      "swap /var/swap\\040file                         file\t1048572\t0\t-3",
      "swap /dev/zram0                              partition\t4194300\t0\t100",
      "swap /dev/zd0                                partition\t4194300\t0\t-4",
      ...disk(AHCI, "8:0", [2, 3]),
      ...disk(NVME, "259:0", [1]),
      "block zram0 /sys/devices/virtual/block/zram0 whole",
      "block zd0 /sys/devices/virtual/block/zd0 whole",
      "dev 251:0 /sys/devices/virtual/block/zram0",
      "dev 230:0 /sys/devices/virtual/block/zd0",
      spec("/dev/sda2", "8:2"),
      spec("/dev/zram0", "251:0"),
      spec("/dev/zd0", "230:0"),
    ];
    const swaps = needs(host).filter((n) => n.kind === "swap");
    expect(swaps.map((n) => n.what)).toEqual(["swap on /dev/sda2", "swap on /var/swap file", "swap on /dev/zram0", "swap on /dev/zd0"]);
    expect(byName(swaps)).toEqual({
      "swap:/dev/sda2": { controllers: ["0000:00:17.0"], unresolved: [] },
      "swap:/var/swap file": { controllers: ["0000:3d:00.0"], unresolved: [] },
      "swap:/dev/zram0": { controllers: [], unresolved: [] },
      "swap:/dev/zd0": { controllers: [], unresolved: ["/dev/zd0 is not on PCI (/sys/devices/virtual/block/zd0)"] },
    });
  });

  it("needs every crypttab volume opened at boot, by its source device", () => {
    const host = [
      "crypttab # <target name> <source device> <key file> <options>",
      "crypttab cryptdata UUID=3f1c0b8e-1d2a-4e5b-9c6d-7e8f9a0b1c2d /etc/keys/data.key luks",
      "crypttab cryptusb /dev/sdz1 none luks,noauto",
      "crypttab cryptgone PARTUUID=0000-01 none luks",
      ...disk(AHCI_2, "8:16", [1]),
      spec("UUID=3f1c0b8e-1d2a-4e5b-9c6d-7e8f9a0b1c2d", "8:17"),
    ];
    expect(needs(host)).toEqual([
      { kind: "crypttab", name: "crypttab:cryptdata", what: "crypttab's cryptdata on UUID=3f1c0b8e-1d2a-4e5b-9c6d-7e8f9a0b1c2d", controllers: ["0000:00:17.0"], unresolved: [] },
      { kind: "crypttab", name: "crypttab:cryptgone", what: "crypttab's cryptgone on PARTUUID=0000-01", controllers: [], unresolved: ["PARTUUID=0000-01 is not a block device on the host"] },
    ]);
  });

  it("passes over what fstab does not mount from the host's own disks at boot", () => {
    const entry = (line: string) => parseHostStorage(`fstab ${line}\n`).fstab;
    for (const line of ["proc /proc proc defaults 0 0", "/dev/sdb2 /mnt ext4 noauto 0 0", "/a /b none bind 0 0", "nas:/m /srv nfs4 defaults 0 0", "/dev/sdc1 /d ext4 _netdev 0 0", "tmpfs /tmp tmpfs defaults 0 0", "/dev/sda4 none swap sw 0 0"]) {
      expect({ line, kept: bootMounts(entry(line)) }).toEqual({ line, kept: [] });
    }
    expect(bootMounts(entry("server:/root / nfs defaults 0 0"))).toHaveLength(1);
  });
});

/** sshPath lines: interfaces, the client, the route to it, then tunnel details. */
const ssh = (lines: string[], hasIp = true) => sshNeed(parseSshPath(lines.join("\n") + "\n"), hasIp);
const E1000 = "/sys/devices/pci0000:00/0000:00:19.0";

describe("sshNeed", () => {
  it("follows a bridge over a bond to its ports", () => {
    const need = ssh([
      "net br0 -  bond0 vnet0",
      "net bond0 -  enp3s0f0 enp3s0f1",
      "net vnet0 -",
      "net enp3s0f0 /sys/devices/pci0000:00/0000:00:01.1/0000:03:00.0",
      "net enp3s0f1 /sys/devices/pci0000:00/0000:00:01.1/0000:03:00.1",
      "client 192.168.1.20",
      "route 192.168.1.20 dev br0 src 192.168.1.5 uid 0",
    ]);
    // vnet0 (a guest's tap) has nothing beneath: it is a dead end, not a way the session arrives.
    expect(need).toMatchObject({ what: "the SSH session from 192.168.1.20", controllers: ["0000:03:00.0", "0000:03:00.1"] });
  });

  it("traces WireGuard through the route to its peer's endpoint", () => {
    const need = ssh([
      "net eth0 " + E1000,
      "net wg0 -",
      "client 10.8.0.2",
      "route 10.8.0.2 dev wg0 src 10.8.0.1 uid 0",
      "link 4: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/none  promiscuity 0 minmtu 0 maxmtu 2147483552 \\    wireguard addrgenmode none",
      "wg-exit 0",
      "wg wg0\tq2Xb3YF7Rk0ZdKp1m4HgVbW6cT8nLs9JaE5uOiQy3Hk=\t198.51.100.7:51820",
      "wg wg0\tZ8b3YF7Rk0ZdKp1m4HgVbW6cT8nLs9JaE5uOiQy3Hk=\t(none)",
      "peerroute 198.51.100.7 198.51.100.7 via 192.168.1.1 dev eth0 src 192.168.1.5 uid 0",
    ]);
    expect(need).toMatchObject({ controllers: ["0000:00:19.0"], unresolved: [] });
  });

  it("traces a GRE tunnel through its remote, and an IPv6 WireGuard endpoint", () => {
    expect(ssh([
      "net eth0 " + E1000,
      "net gre1 -",
      "client 10.9.0.2",
      "route 10.9.0.2 dev gre1 src 10.9.0.1 uid 0",
      "link 5: gre1@NONE: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1476 qdisc noqueue state UNKNOWN \\    link/gre 192.168.1.5 peer 203.0.113.9 promiscuity 0 \\    gre remote 203.0.113.9 local 192.168.1.5 ttl inherit",
      "peerroute 203.0.113.9 203.0.113.9 via 192.168.1.1 dev eth0 src 192.168.1.5 uid 0",
    ])).toMatchObject({ controllers: ["0000:00:19.0"], unresolved: [] });
    expect(ssh([
      "net eth0 " + E1000,
      "net wg0 -",
      "client 10.8.0.2",
      "route 10.8.0.2 dev wg0 src 10.8.0.1 uid 0",
      "wg-exit 0",
      "wg wg0\tq2Xb3YF7Rk0ZdKp1m4HgVbW6cT8nLs9JaE5uOiQy3Hk=\t[2001:db8::7]:51820",
      "peerroute 2001:db8::7 2001:db8::7 from :: via fe80::1 dev eth0 proto ra src 2001:db8::5 metric 100 pref medium",
    ])).toMatchObject({ controllers: ["0000:00:19.0"], unresolved: [] });
  });

  it("says why the session's path could not be traced", () => {
    const reason = (lines: string[], hasIp = true) => ssh(lines, hasIp).unresolved;
    const overWg = ["net eth0 " + E1000, "net wg0 -", "client 10.8.0.2", "route 10.8.0.2 dev wg0 src 10.8.0.1 uid 0"];
    expect(reason([])).toEqual(["$SSH_CONNECTION is not set (sshd sets it; logging in through `su` or `sudo` drops it)"]);
    expect(reason(["client 10.0.2.2"], false)).toEqual(["`ip` is not installed (iproute2), so nothing names the interface it arrives on"]);
    expect(reason(["client 10.0.2.2", "route RTNETLINK answers: Network is unreachable"])).toEqual([
      "`ip route get 10.0.2.2` named no interface (RTNETLINK answers: Network is unreachable)",
    ]);
    expect(reason(overWg)).toEqual([
      "it arrives on wg0, which has no PCI device beneath it and whose peer endpoint is unknown (`wg` is not installed, and `ip -d link show` names no remote)",
    ]);
    expect(reason([...overWg, "wg-exit 1", "wg Unable to access interface: Operation not permitted"])).toEqual([
      "it arrives on wg0, which has no PCI device beneath it and whose peer endpoint is unknown (`wg show all endpoints` failed: Unable to access interface: Operation not permitted)",
    ]);
    expect(reason(["net tailscale0 -", "client 100.101.102.103", "route 100.101.102.103 dev tailscale0 table 52 src 100.64.0.7 uid 0", "wg-exit 0"])).toEqual([
      "it arrives on tailscale0, which has no PCI device beneath it and whose peer endpoint is unknown (neither `wg show all endpoints` nor `ip -d link show` names one for tailscale0)",
    ]);
    expect(reason([...overWg, "wg-exit 0", "wg wg0\tkey=\t10.8.0.9:51820", "peerroute 10.8.0.9 10.8.0.9 dev wg0 src 10.8.0.1 uid 0"])).toEqual([
      "the route to wg0's peer 10.8.0.9 leads back into wg0",
    ]);
    expect(reason(["net eth0 /sys/devices/platform/soc/fe300000.ethernet", "client 10.0.0.9", "route 10.0.0.9 dev eth0 src 10.0.0.2 uid 0"])).toEqual([
      "it arrives on eth0, whose device /sys/devices/platform/soc/fe300000.ethernet is not on PCI",
    ]);
  });
});

describe("describeUnresolved", () => {
  it("names what, why, and the key with the entry that acknowledges it", () => {
    expect(describeUnresolved({ kind: "mount", name: "/boot/efi", what: "/boot/efi on nfs server:/export", controllers: [], unresolved: ["it is on the network (nfs)"] })).toBe(
      "/boot/efi on nfs server:/export cannot be traced to PCI devices: it is on the network (nfs). The host needs it to boot: check by hand " +
        'that the selection holds none of its disks\' controllers, then add "/boot/efi" to `acknowledgeUnresolvedHostDevices`',
    );
  });
});
