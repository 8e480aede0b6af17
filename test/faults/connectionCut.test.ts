// The connection cut in the middle of a file write (issue 10 item 7): the SSH layer's
// writeFileAtomic streams a boot file to the namespaced sshd test host through a rate-limited link,
// and at a seeded byte offset the session is cut: its sshd process killed (what a crashed or
// restarted sshd, or a server-side timeout, does) or the link dropped. After each trial the file
// must hold the old or the new bytes, never a mix, and the next write must converge.
import * as fs from "node:fs";
import * as path from "node:path";
import { ConnectionSchema } from "../../providers/ssh/connection";
import { closeAllConnections, RemoteCommandError, withHost } from "../../providers/ssh/host";
import { referenceAlpineFiles } from "../standins/alpineHost";
import { runCommand } from "../testhost/command";
import { startTestHost, TestHost } from "../testhost/testHost";
import { childPids, commandLine } from "./processes";
import { FaultTable, noViolations, Prng, TrialResult } from "./trials";

jest.setTimeout(8 * 60_000);

const TRIALS = 52;
/** Slow enough that a 128-256 KiB write takes a quarter to half a second, so a cut lands inside it. */
const LINK_RATE = "4mbit";
const fixture = (name: string) => fs.readFileSync(path.join(__dirname, "../unit", name), "utf8");

/** The boot files, as the reference hosts have them, and the edit a run would make to each. */
const bootFiles: ReadonlyArray<{ path: string; old: string; edit: [string, string] }> = [
  {
    path: "/etc/default/grub",
    old: fixture("kernelCmdline/fixtures/debian12-default-grub"),
    edit: ['GRUB_CMDLINE_LINUX_DEFAULT="quiet"', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"'],
  },
  {
    path: "/etc/update-extlinux.conf",
    old: referenceAlpineFiles["/etc/update-extlinux.conf"],
    edit: ['default_kernel_opts="quiet rootfstype=ext4"', 'default_kernel_opts="quiet rootfstype=ext4 intel_iommu=on iommu=pt"'],
  },
  {
    path: "/etc/mkinitfs/mkinitfs.conf",
    old: referenceAlpineFiles["/etc/mkinitfs/mkinitfs.conf"],
    edit: ["ext4", "ext4 vfio"],
  },
  {
    path: "/etc/modprobe.d/vfio.conf",
    old: "options vfio-pci ids=8086:3a67,8086:3a68\nsoftdep uhci_hcd pre: vfio-pci\n",
    edit: ["ids=8086:3a67,8086:3a68", "ids=8086:3a67,8086:3a68,8086:3a69,8086:3a6c"],
  },
];

/**
 * The new bytes: a long comment header, then the edited file. The header makes the write span many
 * SSH packets; putting it first means a truncated file loses the settings themselves, as a cut
 * `/etc/default/grub` loses GRUB_CMDLINE_LINUX.
 */
function newContent(file: (typeof bootFiles)[number], trial: number, size: number): Buffer {
  const body = file.old.replace(file.edit[0], file.edit[1]);
  if (body === file.old) throw new Error(`the edit of ${file.path} matches nothing in its old content`);
  const line = `# vfio-host fault trial ${trial}: padding that makes this write span many SSH packets\n`;
  return Buffer.from(line.repeat(Math.ceil((size - body.length) / line.length)) + body);
}

let testHost: TestHost;
const table = new FaultTable("connection cut during a write");
const onHost = (p: string) => path.join(testHost.rootfs, p);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const connection = () => ConnectionSchema.parse({ host: testHost.host, port: testHost.port, privateKey: testHost.privateKey, hostKey: testHost.hostKey });

/** The per-connection sshd processes ("sshd: root@notty"): the listener's children that are sshd. */
const sessionSshds = () => childPids(testHost.sshdPid).filter((pid) => commandLine(pid).startsWith("sshd:"));

function killSessions(): void {
  for (const pid of sessionSshds()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** Until nothing runs under the listener: a killed session's shell is re-parented to it (PID 1) and finishes its script first. */
async function untilHostIdle(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (childPids(testHost.sshdPid).length > 0) {
    if (Date.now() > deadline) throw new Error(`processes still running on the test host after ${timeoutMs} ms: ${childPids(testHost.sshdPid).join(" ")}`);
    await sleep(20);
  }
}

const strayTempFiles = (dir: string) => fs.readdirSync(onHost(dir)).filter((name) => name.startsWith(".vfio-host."));
const link = (state: "up" | "down") => runCommand("ip", ["link", "set", testHost.veth, state]);
/** Only the faulted write goes through the slow link (on this machine's end of the veth: what reaches the host); the rest runs at full speed. */
const shapeLink = (slow: boolean) =>
  runCommand("tc", slow ? ["qdisc", "add", "dev", testHost.veth, "root", "tbf", "rate", LINK_RATE, "burst", "32kb", "latency", "400ms"] : ["qdisc", "del", "dev", testHost.veth, "root"]);

/** The short reason of a failed write: the remote exit status, or the connection's error. */
const why = (error: Error) => (error instanceof RemoteCommandError ? `exit ${error.result.code}` : error.message.split("\n")[0].slice(0, 60));

type Cut = "kill sshd" | "link down, sshd times out" | "link flap";

/** The temp file's size once the one next to `target` holds at least `offset` bytes; undefined when the write ended first. */
async function untilTempHolds(target: string, offset: number, settled: () => boolean): Promise<number | undefined> {
  const dir = onHost(path.dirname(target));
  while (!settled()) {
    for (const name of strayTempFiles(path.dirname(target))) {
      try {
        const size = fs.statSync(path.join(dir, name)).size;
        if (size >= offset) return size;
      } catch {
        // Renamed or removed between the listing and the stat.
      }
    }
    await sleep(1);
  }
  return undefined;
}

async function cutTrial(trial: number, prng: Prng): Promise<TrialResult> {
  const file = bootFiles[(trial - 1) % bootFiles.length];
  fs.mkdirSync(path.dirname(onHost(file.path)), { recursive: true });
  fs.writeFileSync(onHost(file.path), file.old);
  const data = newContent(file, trial, prng.int(128, 256) * 1024);
  // A flap costs seconds of TCP retransmission back-off, so it is the rarest cut.
  const roll = prng.next();
  const cut: Cut = roll < 0.55 ? "kill sshd" : roll < 0.92 ? "link down, sshd times out" : "link flap";
  // The fault points of a write: before any byte of the temp file, inside it, after its last byte (before the rename).
  const where = prng.next();
  const offset = where < 0.1 ? 0 : where < 0.9 ? prng.int(1, data.length - 1) : data.length;

  await withHost(connection(), (host) => host.exec(["true"])); // the session to cut exists before the write starts
  await shapeLink(true);
  let settled = false;
  const write = withHost(connection(), (host) => host.writeFileAtomic(file.path, data)).then(() => "write succeeded", (error: Error) => `write failed (${why(error)})`);
  void write.then(() => (settled = true));

  const hit = await untilTempHolds(file.path, offset, () => settled);
  let fault = `${cut} @ ${hit ?? "(missed: write ended first)"}/${data.length} B`;
  if (hit !== undefined) {
    if (cut === "kill sshd") {
      killSessions();
    } else if (cut === "link down, sshd times out") {
      await link("down");
      await sleep(prng.int(50, 300));
      killSessions();
      await link("up");
    } else {
      const downMs = prng.int(100, 400);
      await link("down");
      await sleep(downMs);
      await link("up");
      fault += ` (down ${downMs} ms)`;
    }
  }
  let hung: NodeJS.Timeout | undefined;
  const writeOutcome = await Promise.race([write, new Promise<string>((resolve) => (hung = setTimeout(() => resolve("write hung for 60 s"), 60_000)))]);
  clearTimeout(hung);
  await untilHostIdle(10_000);
  await shapeLink(false);

  const bytes = fs.readFileSync(onHost(file.path));
  const state = bytes.equals(Buffer.from(file.old)) ? "old" : bytes.equals(data) ? "new" : `PARTIAL (${bytes.length} B)`;
  const strays = strayTempFiles(path.dirname(file.path));
  for (const name of strays) fs.rmSync(path.join(onHost(path.dirname(file.path)), name));

  // The next apply is a new provider process: a new connection pool, so a connection whose server
  // died while the link was down is not reused (within one process it would fail the next command).
  await closeAllConnections();
  const followUp = await withHost(connection(), (host) => host.writeFileAtomic(file.path, data)).then(
    () => (fs.readFileSync(onHost(file.path)).equals(data) ? "converged" : "wrote other bytes"),
    (error: Error) => `failed (${why(error)})`,
  );
  return {
    fault: `${file.path}: ${fault}`,
    outcome: state,
    partialFiles: state.startsWith("PARTIAL") ? 1 : 0,
    nonConverging: followUp === "converged" ? 0 : 1,
    strayTempFiles: strays.length,
    notes: `${writeOutcome}; next write ${followUp}`,
  };
}

beforeAll(async () => {
  testHost = await table.stage("test host", () => startTestHost());
});

afterAll(async () => {
  await closeAllConnections();
  await testHost?.stop();
});

test(`a write cut at ${TRIALS} seeded points leaves each boot file old or new, and the next write converges`, async () => {
  await table.run(TRIALS, cutTrial);
  table.print();
  expect(table.violations()).toEqual(noViolations);
});
