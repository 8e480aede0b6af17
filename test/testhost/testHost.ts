import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Client } from "ssh2";
import { commandEnv, runCommand } from "./command";
import { ensureTestHostRootfs, vfioHostCacheDir } from "./rootfs";
import { processStartTime, startWatchdog } from "./watchdog";

/** A Debian bookworm host reachable over SSH, isolated in its own network namespace and root filesystem. */
export interface TestHost {
  host: string;
  port: number;
  user: "root";
  /** OpenSSH-format ed25519 private key, accepted for root and for `deploy` (passwordless sudo). */
  privateKey: string;
  /** The server's first host key (ed25519 unless `hostKeyTypes` says otherwise) as `ssh-ed25519 AAAA…` (no comment), for host-key pinning. */
  hostKey: string;
  /** Every host key the server has, as `hostKey` is written, in the order of `hostKeyTypes`. */
  hostKeys: string[];
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
  /** This machine's end of the host's veth pair: `ip link set VETH down` cuts the host off the network. */
  veth: string;
  /** PID of the `unshare` process whose child is sshd. */
  pid: number;
  /** PID of the sshd listener (PID 1 of the host's PID namespace): each connection is a child of it. */
  sshdPid: number;
  /** sshd's log (-e: everything on stderr). */
  sshdLog: string;
  /** "Accepted publickey" lines in sshd's log, not counting the login that checked readiness. */
  acceptedLogins(): number;
  /** Kills sshd and everything in its namespaces, then removes the namespace, veth, overlay and work dir. */
  stop(): Promise<void>;
}

export type HostKeyType = "ed25519" | "ecdsa" | "rsa";

export interface TestHostOptions {
  /** How long sshd may take to accept a login before start fails (default 20 s). */
  readyTimeoutMs?: number;
  /**
   * The host keys sshd serves (default ed25519 alone), each generated afresh with ssh-keygen's
   * default size. sshd keeps OpenSSH's default algorithms: an RSA key signs with rsa-sha2-512 or
   * rsa-sha2-256 only, since OpenSSH 8.8 refuses ssh-rsa (SHA-1) by default.
   */
  hostKeyTypes?: HostKeyType[];
}

/** A test host whose starting process is gone without stopping it. */
export interface StaleTestHost {
  namespace: string;
  workDir: string;
}

const sshPort = 22;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const workRoot = () => path.join(vfioHostCacheDir(), "testhost-work");
/** The overlay's mount point, its writable layer, and the scratch dir overlayfs needs beside it. */
const treeDirs = (workDir: string) => ({
  rootfs: path.join(workDir, "rootfs"),
  upperDir: path.join(workDir, "upper"),
  overlayWork: path.join(workDir, "overlay-work"),
});

/**
 * What a test host created, as `key=value` lines in its work dir ("record"), written before
 * anything is created. The teardown script sources it, and the next start reads it to clean up
 * after a run that died. Start times (/proc/PID/stat field 22, proc(5)) keep a reused PID from
 * being taken for ours.
 */
interface TestHostRecord {
  namespace: string;
  veth: string;
  owner_pid: string;
  owner_start: string;
  launcher_pid?: string;
  launcher_start?: string;
}

function writeRecord(workDir: string, record: TestHostRecord): void {
  const text = Object.entries(record).map(([key, value]) => `${key}=${value}\n`).join("");
  // Renamed into place, so the teardown script never sources half a file.
  fs.writeFileSync(path.join(workDir, "record.tmp"), text);
  fs.renameSync(path.join(workDir, "record.tmp"), path.join(workDir, "record"));
}

function readRecord(workDir: string): TestHostRecord | undefined {
  try {
    const text = fs.readFileSync(path.join(workDir, "record"), "utf8");
    return Object.fromEntries(text.split("\n").filter(Boolean).map((line) => line.split("="))) as TestHostRecord;
  } catch {
    return undefined;
  }
}

/**
 * Removes what a record lists, given the work dir as $1. Every step tolerates its target being
 * gone already. Killing unshare takes sshd along (--kill-child) and with it the PID namespace. The
 * veth is deleted explicitly because a network namespace, and the peer in it, only goes away once
 * its last process has. The lazy unmount detaches the tree even while a dying process holds a file.
 */
const teardownScript = `
work=$1
[ -r "$work/record" ] || exit 0
. "$work/record"
if [ -n "\${launcher_pid:-}" ] && [ "$(sed 's/.*) //' "/proc/$launcher_pid/stat" 2>/dev/null | cut -d' ' -f20)" = "$launcher_start" ]; then
  kill -KILL "$launcher_pid"
fi
ip link del "$veth" 2>/dev/null
ip netns del "$namespace" 2>/dev/null
umount --lazy "$work/rootfs" 2>/dev/null
rm -rf --one-file-system "$work"
`;


/** Test hosts in our cache dir whose starting process is gone (a crashed or killed run). */
export function listStaleTestHosts(): StaleTestHost[] {
  if (!fs.existsSync(workRoot())) return [];
  return fs.readdirSync(workRoot()).flatMap((name) => {
    const workDir = path.join(workRoot(), name);
    const record = readRecord(workDir);
    // A dir without a record yet belongs to a start in progress.
    if (!record || processStartTime(Number(record.owner_pid)) === record.owner_start) return [];
    return [{ namespace: record.namespace, workDir }];
  });
}

/** Removes what stale test hosts left behind; returns their namespace names. Every start runs it. */
export function cleanupStaleTestHosts(): string[] {
  return listStaleTestHosts().map((stale) => {
    spawnSync("sh", ["-c", teardownScript, "testhost-teardown", stale.workDir], { stdio: "ignore", env: commandEnv });
    return stale.namespace;
  });
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
 * Runs in new mount, UTS, IPC and PID namespaces (inside the network namespace) with this
 * machine's tools, then becomes sshd chrooted into the tree. The mounts made here are private to
 * the namespace (unshare(1) makes propagation private) and vanish with it. The tree's /dev already
 * holds the nodes mmdebstrap made (null, zero, urandom, tty…).
 */
const sshdLauncher = `
tree=$1 listen=$2
shift 2
# The remaining arguments are host key files: each becomes one -o HostKey=FILE.
for key in "$@"; do set -- "$@" -o "HostKey=$key"; shift; done
hostname testhost
# proc(5) is the new PID namespace's, but sysctls are this machine's: make them read-only.
mount -o bind,ro "$tree/proc/sys" "$tree/proc/sys"
[ ! -e "$tree/proc/sysrq-trigger" ] || mount -o bind,ro "$tree/proc/sysrq-trigger" "$tree/proc/sysrq-trigger"
# lspci falls back to /proc/bus/pci when /sys is empty, which would show this machine's devices:
# a test host has only the PCI devices a test writes into its tree's /sys.
[ ! -d "$tree/proc/bus" ] || mount -t tmpfs -o ro,mode=0555 tmpfs "$tree/proc/bus"
# A private devpts, so PTYs work and none of this machine's terminals are visible.
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$tree/dev/pts"
mount -o bind "$tree/dev/pts/ptmx" "$tree/dev/ptmx"
# /run is a tmpfs on a real host; sshd needs /run/sshd for privilege separation (sshd(8)).
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$tree/run"
mkdir -m 0755 "$tree/run/sshd" "$tree/run/lock"
# /proc/swaps is this machine's too: a test host has no swap (the guards would refuse one they cannot trace).
printf 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n' > "$tree/run/swaps"
[ ! -e "$tree/proc/swaps" ] || mount -o bind,ro "$tree/run/swaps" "$tree/proc/swaps"
# chroot is no boundary against root, so drop what could reach this machine's kernel or disks.
exec setpriv --bounding-set=-sys_module,-sys_boot,-sys_time,-sys_rawio,-sys_admin,-mknod -- \\
  chroot "$tree" /usr/sbin/sshd -D -e -o "ListenAddress=$listen" "$@"
`;

/** One login attempt; resolves when the server both shows one of its host keys and accepts the key. */
function tryLogin(host: string, privateKey: string, hostKeyBlobs: Buffer[]): Promise<void> {
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
        hostVerifier: (key: Buffer) => hostKeyBlobs.some((blob) => key.equals(blob)),
      });
  });
}

async function waitForLogin(host: string, privateKey: string, hostKeys: string[], launcher: ChildProcess, log: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const blobs = hostKeys.map((line) => Buffer.from(line.split(" ")[1], "base64"));
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (launcher.exitCode !== null || launcher.signalCode !== null) {
      throw new Error(`sshd exited (${launcher.exitCode ?? launcher.signalCode}) before accepting a login; its log ${log}:\n${fs.readFileSync(log, "utf8")}`);
    }
    try {
      return await tryLogin(host, privateKey, blobs);
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
  const namespace = `vfiotest-${id}`;
  const workDir = path.join(workRoot(), namespace);
  // Interface names are limited to 15 bytes (IFNAMSIZ).
  const record: TestHostRecord = { namespace, veth: `vt-${id}`, owner_pid: String(process.pid), owner_start: processStartTime(process.pid) };
  fs.mkdirSync(workDir, { recursive: true });
  writeRecord(workDir, record);
  const teardown = startWatchdog("testhost-watchdog", teardownScript, [workDir]);
  try {
    const { rootfs, upperDir, overlayWork } = treeDirs(workDir);
    const clientKey = path.join(workDir, "client_ed25519");
    const hostKeyFiles = (options.hostKeyTypes ?? ["ed25519"]).map((type) => ({ type, file: `/etc/ssh/ssh_host_${type}_key` }));
    const sshdLog = path.join(workDir, "sshd.log");
    const { local, remote } = await pickSubnet();

    // An overlay rather than a copy: mounting takes milliseconds where `cp -a` of the ~200 MB tree
    // took 1-9 s here (ext4 has no reflinks), and the pristine tree stays untouched beneath it.
    [rootfs, upperDir, overlayWork].forEach((dir) => fs.mkdirSync(dir));
    await runCommand("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${pristineRootfs},upperdir=${upperDir},workdir=${overlayWork}`, rootfs]);
    await runCommand("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `vfiotest-client-${id}`, "-f", clientKey]);
    for (const { type, file } of hostKeyFiles) {
      await runCommand("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", `root@${namespace}`, "-f", path.join(rootfs, file)]);
    }
    const authorizedKey = fs.readFileSync(`${clientKey}.pub`);
    fs.writeFileSync(path.join(rootfs, "root/.ssh/authorized_keys"), authorizedKey, { mode: 0o600 });
    const deployKeys = path.join(rootfs, "home/deploy/.ssh/authorized_keys");
    fs.writeFileSync(deployKeys, authorizedKey, { mode: 0o600 });
    const deploy = treeUserIds(rootfs, "deploy");
    fs.chownSync(deployKeys, deploy.uid, deploy.gid);

    for (const args of [
      ["netns", "add", namespace],
      ["link", "add", record.veth, "type", "veth", "peer", "name", "eth0", "netns", namespace],
      ["addr", "add", `${local}/30`, "dev", record.veth],
      ["link", "set", record.veth, "up"],
      ["-n", namespace, "addr", "add", `${remote}/30`, "dev", "eth0"],
      ["-n", namespace, "link", "set", "eth0", "up"],
      ["-n", namespace, "link", "set", "lo", "up"],
    ]) {
      await runCommand("ip", args);
    }

    const logFd = fs.openSync(sshdLog, "a");
    // `ip netns exec` execs its command (no fork), so this PID is unshare's; --kill-child makes
    // sshd (PID 1 of the new PID namespace) die with it, and the kernel then kills the rest.
    const launcher = spawn(
      "ip",
      ["netns", "exec", namespace, "unshare", "--mount", "--uts", "--ipc", "--pid", "--kill-child", `--mount-proc=${rootfs}/proc`,
        "sh", "-euc", sshdLauncher, "sshd-launcher", rootfs, `${remote}:${sshPort}`, ...hostKeyFiles.map((k) => k.file)],
      { stdio: ["ignore", logFd, logFd], env: commandEnv },
    );
    fs.closeSync(logFd);
    const exited = new Promise<void>((resolve) => launcher.once("exit", () => resolve()));
    launcher.unref(); // The watchdog, not this process, is what ends a forgotten host.
    if (launcher.pid === undefined) throw new Error(`could not spawn ip netns exec for ${namespace}`);
    const launcherPid = launcher.pid;
    writeRecord(workDir, { ...record, launcher_pid: String(launcherPid), launcher_start: processStartTime(launcherPid) });

    const privateKey = fs.readFileSync(clientKey, "utf8");
    const hostKeys = hostKeyFiles.map((k) => fs.readFileSync(path.join(rootfs, `${k.file}.pub`), "utf8").split(" ").slice(0, 2).join(" "));
    await waitForLogin(remote, privateKey, hostKeys, launcher, sshdLog, options.readyTimeoutMs ?? 20_000);
    const readinessLogins = countAccepted(sshdLog);
    // unshare's only child: the launcher shell, which exec'd its way to sshd.
    const sshdPid = Number(fs.readFileSync(`/proc/${launcherPid}/task/${launcherPid}/children`, "utf8").trim());

    let stopping: Promise<void> | undefined;
    const stop = async () => {
      if (launcher.exitCode === null && launcher.signalCode === null) {
        launcher.ref();
        // Killing sshd, PID 1 of the namespace, makes the kernel kill and reap everything in it before
        // unshare sees its child exit; killing unshare would leave them to this machine's init, which reaps late.
        const children = fs.readFileSync(`/proc/${launcherPid}/task/${launcherPid}/children`, "utf8").trim();
        process.kill(Number(children) || launcherPid, "SIGKILL");
        await exited;
      }
      await teardown();
    };
    return {
      host: remote,
      port: sshPort,
      user: "root",
      privateKey,
      hostKey: hostKeys[0],
      hostKeys,
      rootfs,
      pristineRootfs,
      upperDir,
      namespace,
      veth: record.veth,
      pid: launcherPid,
      sshdPid,
      sshdLog,
      acceptedLogins: () => countAccepted(sshdLog) - readinessLogins,
      stop: () => (stopping ??= stop()),
    };
  } catch (error) {
    await teardown();
    throw error;
  }
}
