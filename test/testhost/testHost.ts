import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Client } from "ssh2";
import { commandEnv, runCommand } from "./command";
import { ensureTestHostRootfs, vfioHostCacheDir } from "./rootfs";

/** A Debian bookworm host reachable over SSH, isolated in its own network namespace and root filesystem. */
export interface TestHost {
  host: string;
  port: number;
  user: "root";
  /** OpenSSH-format ed25519 private key, accepted for root and for `deploy` (passwordless sudo). */
  privateKey: string;
  /** The server's ed25519 host key as `ssh-ed25519 AAAA…` (no comment), for host-key pinning. */
  hostKey: string;
  /** The host's `/` as this machine sees it: an overlay of the cached tree, writable, private to this host. */
  rootfs: string;
  /** The cached tree beneath `rootfs`, never written, to compare files byte for byte with what a test changed. */
  pristineRootfs: string;
  /**
   * The overlay's upper layer: every file changed since the cached tree, starting with the host key
   * and authorized_keys that start wrote (overlayfs records a deletion as a 0:0 character device).
   */
  upperDir: string;
  namespace: string;
  /** PID of the `unshare` process whose child is sshd; its death takes sshd's whole PID namespace with it. */
  pid: number;
  /** sshd's log (-e: everything on stderr). */
  sshdLog: string;
  /** "Accepted publickey" lines in sshd's log, not counting the login that checked readiness. */
  acceptedLogins(): number;
  stop(): Promise<void>;
}

export interface TestHostOptions {
  /** How long sshd may take to accept a login before start fails (default 20 s). */
  readyTimeoutMs?: number;
}

/**
 * What a test host created, written to its work dir before anything is created, so a run that
 * crashed can be cleaned up by the next one (see cleanupStaleTestHosts).
 */
interface TestHostRecord {
  namespace: string;
  veth: string;
  workDir: string;
  /** The node process that started the host: while it lives, the host is not stale. */
  owner: ProcessIdentity;
  /** The process spawned in the namespace (unshare, whose child is sshd). */
  launcher?: ProcessIdentity;
}

/** A PID plus its start time (/proc/PID/stat field 22, proc(5)), so a reused PID is never mistaken for ours. */
interface ProcessIdentity {
  pid: number;
  startTime: string;
}

const sshPort = 22;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const workRoot = () => path.join(vfioHostCacheDir(), "testhost-work");
const recordFile = (workDir: string) => path.join(workDir, "record.json");
/** The overlay's mount point, its writable layer and the scratch dir overlayfs requires beside it. */
const treeDirs = (workDir: string) => ({
  rootfs: path.join(workDir, "rootfs"),
  upperDir: path.join(workDir, "upper"),
  overlayWork: path.join(workDir, "overlay-work"),
});

function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name in field 2 may contain spaces and parentheses; fields after the last ')' are fixed.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function identify(pid: number): ProcessIdentity {
  return { pid, startTime: processStartTime(pid) ?? "" };
}

const isRunning = (process: ProcessIdentity) => processStartTime(process.pid) === process.startTime;

function writeRecord(record: TestHostRecord): void {
  fs.writeFileSync(recordFile(record.workDir), JSON.stringify(record, null, 2) + "\n");
}

/**
 * Removes everything a record lists. Synchronous so it can run from process.on("exit"); every
 * step tolerates the thing being gone already. The veth is deleted explicitly because a network
 * namespace (and with it the peer) is only destroyed once its last process has died.
 */
function teardownSync(record: TestHostRecord): void {
  // unshare --kill-child takes sshd, and with it the whole PID namespace, along.
  if (record.launcher && isRunning(record.launcher)) process.kill(record.launcher.pid, "SIGKILL");
  spawnSync("ip", ["link", "del", record.veth], { stdio: "ignore", env: commandEnv });
  spawnSync("ip", ["netns", "del", record.namespace], { stdio: "ignore", env: commandEnv });
  // Lazy, so a dying sshd still holding a file cannot keep the tree mounted under the rm below.
  spawnSync("umount", ["--lazy", treeDirs(record.workDir).rootfs], { stdio: "ignore", env: commandEnv });
  spawnSync("rm", ["-rf", "--one-file-system", record.workDir], { stdio: "ignore", env: commandEnv });
}

const liveHosts = new Set<TestHostRecord>();
// Hosts a test forgot to stop, or whose test threw, go away with the test process.
process.on("exit", () => liveHosts.forEach(teardownSync));

/** Test hosts recorded in our cache dir whose starting process is gone (a crashed or killed run). */
export function listStaleTestHosts(): TestHostRecord[] {
  if (!fs.existsSync(workRoot())) return [];
  return fs
    .readdirSync(workRoot())
    .flatMap((name): TestHostRecord[] => {
      try {
        return [JSON.parse(fs.readFileSync(recordFile(path.join(workRoot(), name)), "utf8"))];
      } catch {
        // The record is written right after its dir, before anything else is created.
        return [];
      }
    })
    .filter((record) => !isRunning(record.owner));
}

/** Removes what stale test hosts left behind; returns their namespace names. Runs at every start. */
export function cleanupStaleTestHosts(): string[] {
  const stale = listStaleTestHosts();
  stale.forEach(teardownSync);
  return stale.map((record) => record.namespace).filter(Boolean);
}

/** A free /30 in 10.213.0.0/16: this machine's end and the test host's end. */
async function pickSubnet(): Promise<{ local: string; remote: string }> {
  const inUse = await runCommand("ip", ["-4", "-o", "addr", "show"]);
  for (;;) {
    const [x, y] = randomBytes(2);
    const base = y & 0xfc;
    const local = `10.213.${x}.${base + 1}`;
    if (!inUse.includes(` ${local}/`)) return { local, remote: `10.213.${x}.${base + 2}` };
  }
}

/** The user's numeric ids from the tree's own /etc/passwd (they mean nothing on this machine). */
function treeUserIds(tree: string, user: string): { uid: number; gid: number } {
  const line = fs.readFileSync(path.join(tree, "etc/passwd"), "utf8").split("\n").find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`user ${user} missing from ${tree}/etc/passwd: the rootfs recipe creates it`);
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Runs in the new mount, UTS, IPC and PID namespaces (inside the network namespace), with this
 * machine's tools, then becomes sshd chrooted into the tree. Every mount here is private to the
 * namespace (unshare(1) makes propagation private) and vanishes with it, so stop has nothing to
 * unmount. The tree's /dev already holds the nodes mmdebstrap made (null, zero, urandom, tty…).
 */
const sshdLauncher = `
tree=$1 listen=$2
hostname testhost
# proc(5) is the new PID namespace's, but sysctls are this machine's: make them read-only.
mount -o bind,ro "$tree/proc/sys" "$tree/proc/sys"
[ ! -e "$tree/proc/sysrq-trigger" ] || mount -o bind,ro "$tree/proc/sysrq-trigger" "$tree/proc/sysrq-trigger"
# A private devpts, so PTYs work and none of this machine's terminals are visible.
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$tree/dev/pts"
mount -o bind "$tree/dev/pts/ptmx" "$tree/dev/ptmx"
# /run is a tmpfs on a real host; sshd needs /run/sshd for privilege separation (sshd(8)).
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$tree/run"
mkdir -m 0755 "$tree/run/sshd" "$tree/run/lock"
# chroot is no boundary against root, so drop what could reach this machine's kernel or disks.
exec setpriv --bounding-set=-sys_module,-sys_boot,-sys_time,-sys_rawio,-sys_admin,-mknod -- \\
  chroot "$tree" /usr/sbin/sshd -D -e -o "ListenAddress=$listen" -o HostKey=/etc/ssh/ssh_host_ed25519_key
`;

/** One login attempt; resolves when the server both shows the expected host key and accepts the key. */
function tryLogin(host: string, privateKey: string, hostKeyBlob: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    client
      .on("ready", () => {
        client.end();
        resolve();
      })
      .on("error", reject)
      .connect({
        host,
        port: sshPort,
        username: "root",
        privateKey,
        readyTimeout: 5000,
        hostVerifier: (key: Buffer) => key.equals(hostKeyBlob),
      });
  });
}

async function waitForLogin(host: string, privateKey: string, hostKey: string, launcher: ChildProcess, log: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const blob = Buffer.from(hostKey.split(" ")[1], "base64");
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (launcher.exitCode !== null || launcher.signalCode !== null) {
      throw new Error(`sshd exited (${launcher.exitCode ?? launcher.signalCode}) before accepting a login; its log ${log}:\n${fs.readFileSync(log, "utf8")}`);
    }
    try {
      return await tryLogin(host, privateKey, blob);
    } catch (error) {
      lastError = error;
      await sleep(100);
    }
  }
  throw new Error(`no SSH login to root@${host} within ${timeoutMs} ms (last error: ${String(lastError)}); sshd log ${log}:\n${fs.readFileSync(log, "utf8")}`);
}

function countAccepted(log: string): number {
  return fs.readFileSync(log, "utf8").split("\n").filter((line) => line.includes("Accepted publickey")).length;
}

export async function startTestHost(options: TestHostOptions = {}): Promise<TestHost> {
  cleanupStaleTestHosts();
  const pristineRootfs = await ensureTestHostRootfs();
  const id = randomBytes(3).toString("hex");
  // Interface names are limited to 15 bytes (IFNAMSIZ).
  const record: TestHostRecord = { namespace: `vfiotest-${id}`, veth: `vt-${id}`, workDir: path.join(workRoot(), `vfiotest-${id}`), owner: identify(process.pid) };
  fs.mkdirSync(record.workDir, { recursive: true });
  writeRecord(record);
  liveHosts.add(record);
  try {
    const { rootfs, upperDir, overlayWork } = treeDirs(record.workDir);
    const clientKey = path.join(record.workDir, "client_ed25519");
    const hostKeyFile = path.join(rootfs, "etc/ssh/ssh_host_ed25519_key");
    const sshdLog = path.join(record.workDir, "sshd.log");
    const { local, remote } = await pickSubnet();

    // An overlay rather than a copy: mounting takes milliseconds where `cp -a` of the ~200 MB tree
    // took 1-9 s here (ext4 has no reflinks), and the pristine tree stays untouched beneath it.
    [rootfs, upperDir, overlayWork].forEach((dir) => fs.mkdirSync(dir));
    await runCommand("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${pristineRootfs},upperdir=${upperDir},workdir=${overlayWork}`, rootfs]);
    await runCommand("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `vfiotest-client-${id}`, "-f", clientKey]);
    await runCommand("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `root@${record.namespace}`, "-f", hostKeyFile]);
    const authorizedKey = fs.readFileSync(`${clientKey}.pub`);
    fs.writeFileSync(path.join(rootfs, "root/.ssh/authorized_keys"), authorizedKey, { mode: 0o600 });
    const deployKeys = path.join(rootfs, "home/deploy/.ssh/authorized_keys");
    fs.writeFileSync(deployKeys, authorizedKey, { mode: 0o600 });
    const deploy = treeUserIds(rootfs, "deploy");
    fs.chownSync(deployKeys, deploy.uid, deploy.gid);

    for (const args of [
      ["netns", "add", record.namespace],
      ["link", "add", record.veth, "type", "veth", "peer", "name", "eth0", "netns", record.namespace],
      ["addr", "add", `${local}/30`, "dev", record.veth],
      ["link", "set", record.veth, "up"],
      ["-n", record.namespace, "addr", "add", `${remote}/30`, "dev", "eth0"],
      ["-n", record.namespace, "link", "set", "eth0", "up"],
      ["-n", record.namespace, "link", "set", "lo", "up"],
    ]) {
      await runCommand("ip", args);
    }

    const logFd = fs.openSync(sshdLog, "a");
    // `ip netns exec` execs its command (no fork), so this PID is unshare's; --kill-child makes
    // sshd (PID 1 of the new PID namespace) die with it, and the kernel then kills the rest.
    const launcher = spawn(
      "ip",
      ["netns", "exec", record.namespace, "unshare", "--mount", "--uts", "--ipc", "--pid", "--kill-child", `--mount-proc=${rootfs}/proc`,
        "sh", "-euc", sshdLauncher, "sshd-launcher", rootfs, `${remote}:${sshPort}`],
      { stdio: ["ignore", logFd, logFd], env: commandEnv },
    );
    fs.closeSync(logFd);
    if (launcher.pid === undefined) throw new Error(`could not spawn ip netns exec for ${record.namespace}`);
    const launcherPid = launcher.pid;
    record.launcher = identify(launcherPid);
    writeRecord(record);
    const exited = new Promise<void>((resolve) => launcher.once("exit", () => resolve()));

    const privateKey = fs.readFileSync(clientKey, "utf8");
    const hostKey = fs.readFileSync(`${hostKeyFile}.pub`, "utf8").split(" ").slice(0, 2).join(" ");
    await waitForLogin(remote, privateKey, hostKey, launcher, sshdLog, options.readyTimeoutMs ?? 20_000);
    const readinessLogins = countAccepted(sshdLog);

    let stopping: Promise<void> | undefined;
    const stop = async () => {
      if (launcher.exitCode === null && launcher.signalCode === null) {
        // Killing sshd, PID 1 of the namespace, makes the kernel kill and reap everything in it before
        // unshare sees its child exit; killing unshare would leave them to this machine's init, which reaps late.
        const children = fs.readFileSync(`/proc/${launcherPid}/task/${launcherPid}/children`, "utf8").trim();
        process.kill(Number(children) || launcherPid, "SIGKILL");
      }
      await exited;
      teardownSync(record);
      liveHosts.delete(record);
    };
    return {
      host: remote,
      port: sshPort,
      user: "root",
      privateKey,
      hostKey,
      rootfs,
      pristineRootfs,
      upperDir,
      namespace: record.namespace,
      pid: launcherPid,
      sshdLog,
      acceptedLogins: () => countAccepted(sshdLog) - readinessLogins,
      stop: () => (stopping ??= stop()),
    };
  } catch (error) {
    teardownSync(record);
    liveHosts.delete(record);
    throw error;
  }
}
