// The lock-out guards fail closed (issue 10 item 4): a `pulumi preview` of the project's program,
// through the real CLI, against the Alpine-shaped test host dressed as hosts whose storage or SSH
// path the guard must trace or refuse. The shapes are real where this machine allows: a ZFS root
// (fstab says / is rpool/ROOT/debian; a stand-in `zpool` lists its vdev on an NVMe namespace of a
// native-multipath subsystem, in fake sysfs), and an SSH session that really arrives on a `wg0`
// (a veth in the host's namespace: its main table routes the client through wg0, while a policy rule
// keeps sshd's replies on eth0), with and without a stand-in `wg` naming the peer; and firmware with
// the IOMMU off (ACPI tables without DMAR or IVRS), which the preflight refuses. Each trial checks
// the refusal's exact text and that the preview wrote nothing (the host's tree, byte for byte).
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Stack } from "@pulumi/pulumi/automation";
import { pulumiEnv } from "../e2e/pulumiEnv";
import { prepareAlpineHost, referenceStack, removeStackFiles } from "../standins/alpineHost";
import { TreeWriter, writeNvmeMultipathPartition, writePciDevices, writeVirtualNic } from "../standins/fakeSysfs";
import { runCommand } from "../testhost/command";
import { startTestHost, TestHost } from "../testhost/testHost";
import { faultsWorkDir } from "./pulumiRuns";
import { FaultTable, noViolations, TrialResult } from "./trials";

jest.setTimeout(10 * 60_000);

/** A Samsung 980 PRO in IOMMU group 8 of its own: the pool's only vdev is partition 3 of its namespace. */
const NVME = { address: "0000:03:00.0", vendor: "144d", device: "a80a", class: "0108", driver: "nvme", modules: ["nvme"] };
const VDEV = "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB-part3";
const ZPOOL_STATUS = [
  "  pool: rpool",
  " state: ONLINE",
  "config:",
  "",
  "\tNAME                                                  STATE     READ WRITE CKSUM",
  "\trpool                                                 ONLINE       0     0     0",
  `\t  ${VDEV}  ONLINE       0     0     0`,
  "",
  "errors: No known data errors",
  "",
].join("\n");
const KEY = "acknowledgeUnresolvedHostDevices";
/** The one stack this suite writes beside the fixture's Pulumi.yaml, which pulumiUp shares. */
const STACK = "guards";
/** The reference selection: the four ICH10 USB controllers of group 4, none of which the host needs. */
const GROUP_4 = { devices: ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"], allowUnsafeInterrupts: true };

let testHost: TestHost;
let backendDir: string;
let stack: Stack;
/** This machine's end of the host's link: the SSH client address the host sees. */
let client: string;
const table = new FaultTable("guards at preview");
const tree = () => new TreeWriter(testHost.rootfs);
const inNamespace = (...args: string[]) => runCommand("ip", ["-n", testHost.namespace, ...args]);

beforeAll(async () => {
  testHost = await startTestHost();
  await prepareAlpineHost(testHost);
  const t = tree();
  writePciDevices(t, [NVME], new Map([[NVME.address, 8]]));
  writeNvmeMultipathPartition(t, NVME.address, "nvme0n1", "nvme0n1p3", "259:3", path.basename(VDEV));
  client = (await runCommand("ip", ["-4", "-o", "addr", "show", "dev", testHost.veth])).split(/\s+/)[3].split("/")[0];

  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-guards-"));
  stack = await referenceStack(testHost, faultsWorkDir, STACK, pulumiEnv(backendDir));
}, 15 * 60_000);

afterAll(async () => {
  table.print();
  await testHost?.stop();
  if (backendDir) fs.rmSync(backendDir, { recursive: true, force: true });
  removeStackFiles(faultsWorkDir, STACK);
});

/** Every file of the host's tree that differs from the pristine tree, with its bytes' hash: what a preview must leave alone. */
function treeState(): Map<string, string> {
  const state = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(testHost.upperDir, rel))) {
      const p = path.join(rel, name);
      const stat = fs.lstatSync(path.join(testHost.upperDir, p));
      if (stat.isDirectory()) walk(p);
      else if (stat.isFile()) state.set(p, createHash("sha256").update(fs.readFileSync(path.join(testHost.upperDir, p))).digest("hex"));
      else state.set(p, stat.isSymbolicLink() ? `-> ${fs.readlinkSync(path.join(testHost.upperDir, p))}` : `mode ${stat.mode}`);
    }
  };
  walk("");
  return state;
}

/** The ZFS-root shape: / in fstab on rpool, the stand-in zpool, and (when `pool`) the pool's status. */
function dressAsZfsRoot(pool: boolean): () => void {
  const t = tree();
  const fstab = fs.readFileSync(t.inTree("/etc/fstab"));
  t.write("/etc/fstab", "rpool/ROOT/debian / zfs defaults 0 0\n");
  t.write("/usr/local/sbin/zpool", fs.readFileSync(path.join(__dirname, "../standins/zpool")), 0o755);
  if (pool) t.write("/etc/zfs-standin/status", ZPOOL_STATUS);
  return () => {
    t.write("/etc/fstab", fstab);
    for (const p of ["/usr/local/sbin/zpool", "/etc/zfs-standin"]) fs.rmSync(t.inTree(p), { recursive: true, force: true });
  };
}

/**
 * The tunnel shape: wg0 (a veth with its peer inside the namespace), the client's address routed
 * through it in the main table, and a rule that sends sshd's replies (from its listen address) by
 * table 100 through eth0, so the session keeps working while `ip route get <client>` names wg0.
 * With `endpoint`, a stand-in wg names that peer, and the main table reaches it through eth0.
 */
async function dressAsTunnel(endpoint?: string): Promise<() => Promise<void>> {
  const t = tree();
  writeVirtualNic(t, "wg0");
  await inNamespace("link", "add", "wg0", "type", "veth", "peer", "name", "wg0peer");
  for (const name of ["wg0", "wg0peer"]) await inNamespace("link", "set", name, "up");
  await inNamespace("route", "add", `${client}/32`, "dev", "eth0", "table", "100");
  await inNamespace("rule", "add", "from", testHost.host, "lookup", "100", "priority", "100");
  await inNamespace("route", "add", `${client}/32`, "dev", "wg0");
  if (endpoint) {
    t.write("/usr/local/sbin/wg", fs.readFileSync(path.join(__dirname, "../standins/wg")), 0o755);
    t.write("/etc/wireguard-standin/endpoints", `wg0\tq2Xb3YF7Rk0ZdKp1m4HgVbW6cT8nLs9JaE5uOiQy3Hk=\t${endpoint}:51820\n`);
    await inNamespace("route", "add", `${endpoint}/32`, "dev", "eth0");
  }
  return async () => {
    await inNamespace("route", "del", `${client}/32`, "dev", "wg0");
    await inNamespace("rule", "del", "from", testHost.host, "lookup", "100", "priority", "100");
    await inNamespace("route", "del", `${client}/32`, "dev", "eth0", "table", "100");
    await inNamespace("link", "del", "wg0");
    if (endpoint) await inNamespace("route", "del", `${endpoint}/32`, "dev", "eth0");
    for (const p of ["/sys/class/net/wg0", "/sys/devices/virtual/net/wg0", "/usr/local/sbin/wg", "/etc/wireguard-standin"]) {
      fs.rmSync(t.inTree(p), { recursive: true, force: true });
    }
  };
}

interface Shape {
  name: string;
  dress: () => Promise<() => void | Promise<void>>;
  vfio: object;
  /** Refused with these messages, or passes with these warnings. */
  refused?: string[];
  warned?: string[];
}

const unresolvedRoot =
  "/ on overlay overlay (fstab: zfs rpool/ROOT/debian) cannot be traced to PCI devices: `zpool status -P` failed (The ZFS modules are not loaded.), " +
  "so the vdevs of pool rpool are unknown. The host needs it to boot: check by hand that the selection holds none of its disks' controllers, " +
  `then add "/" to \`${KEY}\``;
const sshOverWg = () =>
  `the SSH session from ${client} cannot be traced to PCI devices: it arrives on wg0, which has no PCI device beneath it and whose peer endpoint ` +
  "is unknown (`wg` is not installed, and `ip -d link show` names no remote)";

/**
 * Firmware with the IOMMU off: ACPI tables in sysfs, but neither DMAR nor IVRS. The CPU vendor is
 * this machine's (the test host shares its /proc), so the refusal names VT-d or AMD-Vi by it.
 */
function dressAsFirmwareIommuOff(): () => void {
  fs.mkdirSync(tree().inTree("/sys/firmware/acpi/tables"), { recursive: true });
  fs.writeFileSync(tree().inTree("/sys/firmware/acpi/tables/APIC"), "");
  return () => fs.rmSync(tree().inTree("/sys/firmware"), { recursive: true, force: true });
}
const amdCpu = () => fs.readFileSync("/proc/cpuinfo", "utf8").includes("AuthenticAMD");

const shapes = (): Shape[] => [
  {
    name: "firmware with the IOMMU off (no DMAR/IVRS table)",
    dress: async () => dressAsFirmwareIommuOff(),
    vfio: GROUP_4,
    refused: [
      amdCpu()
        ? "AMD-Vi is off in the firmware (no ACPI IVRS table in /sys/firmware/acpi/tables); enable it in the BIOS setup (IOMMU or AMD-Vi, often next to SVM) and run again"
        : "VT-d is off in the firmware (no ACPI DMAR table in /sys/firmware/acpi/tables); enable it in the BIOS setup (Intel Virtualization Technology for Directed I/O) and run again",
    ],
  },
  {
    name: "ZFS root, vdev on the selected NVMe",
    dress: async () => dressAsZfsRoot(true),
    vfio: { devices: ["144d:a80a"] },
    refused: [
      '`devices` entry "144d:a80a" selects 0000:03:00.0 (144d:a80a), the controller of the root filesystem; bound to vfio-pci at boot, the host ' +
        'would lose its root filesystem. Remove it from the selection, or add "0000:03:00.0" to `allowHostCritical` if the host can do without it',
    ],
  },
  { name: "ZFS root, zpool failing", dress: async () => dressAsZfsRoot(false), vfio: GROUP_4, refused: [unresolvedRoot] },
  {
    name: "ZFS root, zpool failing, acknowledged",
    dress: async () => dressAsZfsRoot(false),
    vfio: { ...GROUP_4, [KEY]: ["/"] },
    warned: [`${unresolvedRoot.slice(0, unresolvedRoot.indexOf(". The host needs"))}; passed over because \`${KEY}\` lists "/"`],
  },
  {
    name: "SSH over wg0, peer unknown",
    dress: () => dressAsTunnel(),
    vfio: GROUP_4,
    refused: [
      `${sshOverWg()}. The host needs it to stay reachable: check by hand that the selection holds none of the devices it travels over, ` +
        `then add "ssh" to \`${KEY}\``,
    ],
  },
  {
    name: "SSH over wg0, peer unknown, acknowledged",
    dress: () => dressAsTunnel(),
    vfio: { ...GROUP_4, [KEY]: ["ssh"] },
    warned: [`${sshOverWg()}; passed over because \`${KEY}\` lists "ssh"`],
  },
  {
    name: "SSH over wg0, peer via the selected NIC",
    dress: () => dressAsTunnel("198.51.100.7"),
    vfio: { devices: ["8086:10de"] },
    refused: [
      '`devices` entry "8086:10de" selects 0000:00:19.0 (8086:10de), the NIC carrying this SSH session; bound to vfio-pci at boot, the host ' +
        'would lose this SSH connection. Remove it from the selection, or add "0000:00:19.0" to `allowHostCritical` if the host can do without it',
    ],
  },
];

test("preview refuses a ZFS-root-shaped and a tunnel-shaped host, naming what it could not trace and the key, and a host whose firmware has the IOMMU off; writes nothing", async () => {
  // The seed orders the shapes: each must set itself up and leave nothing behind for the next.
  const order = shapes()
    .map((shape) => ({ shape, key: table.prng.next() }))
    .sort((a, b) => a.key - b.key)
    .map(({ shape }) => shape);
  await table.run(order.length, async (index): Promise<TrialResult> => {
    const shape = order[index - 1];
    const undress = await shape.dress();
    try {
      await stack.setConfig("vfio-host:vfio", { value: JSON.stringify(shape.vfio) });
      const before = treeState();
      const started = Date.now();
      const result = await stack.preview({ diff: true }).then(
        (r) => ({ failure: undefined, output: r.stdout + r.stderr }),
        (err: Error) => ({ failure: err.message, output: err.message }),
      );
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const wrote = [...treeState()].filter(([p, hash]) => before.get(p) !== hash).map(([p]) => p);
      const expected = shape.refused ?? shape.warned ?? [];
      const missing = expected.filter((message) => !result.output.includes(message));
      const outcome = result.failure === undefined ? "passed" : "refused";
      const wanted = shape.refused ? "refused" : "passed";
      if (outcome !== wanted || missing.length > 0 || wrote.length > 0) {
        console.error(`${shape.name}: the CLI said\n${result.output}`);
        throw new Error(
          `${shape.name}: ${outcome} (wanted ${wanted})${wrote.length > 0 ? `, wrote ${wrote.join(", ")}` : ""}` +
            `${missing.length > 0 ? `; missing from the output: ${missing.join(" | ")}` : ""}`,
        );
      }
      return { fault: shape.name, outcome, notes: `preview ${seconds} s, tree unchanged` };
    } finally {
      await undress();
    }
  });
  const errors = table.rows.filter((row) => row.errors > 0).map((row) => row.notes);
  expect(errors).toEqual([]);
  expect(table.violations()).toEqual(noViolations);
});
