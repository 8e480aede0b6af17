// The SSH layer against a real OpenSSH server (its own namespace and root filesystem): every
// assertion reads the test host's files or the remote command's own output.
import { ChildProcess, execFileSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import fc from "fast-check";
import { ConnectionSchema } from "../../providers/ssh/connection";
import { closeAllConnections, sha256Hex, shareReadsInThisProcess, sshStats, withHost } from "../../providers/ssh/host";
import { LOCK_PATH, releaseHostLocks, withHostLock } from "../../providers/ssh/hostLock";
import { readSections } from "../../providers/ssh/sections";
import { childPids } from "../faults/processes";
import { runCommand } from "../testhost/command";
import { startSshAgent } from "../testhost/sshAgent";
import { startTestHost, TestHost } from "../testhost/testHost";

jest.setTimeout(120_000);

let testHost: TestHost;
beforeAll(async () => {
  testHost = await startTestHost();
});
afterAll(async () => {
  await releaseHostLocks();
  await closeAllConnections();
  await testHost?.stop();
});

const connect = (extra: Record<string, unknown> = {}) =>
  ConnectionSchema.parse({
    host: testHost.host,
    port: testHost.port,
    privateKey: testHost.privateKey,
    hostKey: testHost.hostKey,
    ...extra,
  });
const onHost = (p: string) => path.join(testHost.rootfs, p);

test("any byte string survives quoting through the remote /bin/sh", async () => {
  const bytes = fc.uint8Array({ maxLength: 48 }).map((a) => Buffer.from(a.filter((b) => b !== 0)));
  await withHost(connect(), async (host) => {
    await fc.assert(
      fc.asyncProperty(bytes, async (arg) => {
        const result = await host.run(["printf", "%s", arg]);
        expect(result.stdoutBytes.equals(arg)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });
});

test("atomic writes keep mode and owner and leave no temp file", async () => {
  const rel = "etc/vfio-test.conf";
  fs.writeFileSync(onHost(rel), "old\n", { mode: 0o640 });
  fs.chownSync(onHost(rel), 1000, 1000);
  await withHost(connect(), (host) => host.writeFileAtomic("/" + rel, "new\n"));
  const st = fs.statSync(onHost(rel));
  expect(fs.readFileSync(onHost(rel), "utf8")).toBe("new\n");
  expect([st.mode & 0o777, st.uid, st.gid]).toEqual([0o640, 1000, 1000]);
  expect(fs.readdirSync(onHost("etc")).filter((f) => f.startsWith(".vfio-host."))).toEqual([]);

  await withHost(connect(), (host) => host.writeFileAtomic("/etc/new-dir/fresh.conf", "x", { mode: "0600" }));
  expect(fs.statSync(onHost("etc/new-dir/fresh.conf")).mode & 0o777).toBe(0o600);
});

test("the first backup wins, and restore gives back the original bytes or removes a new file", async () => {
  const original = fs.readFileSync(onHost("etc/hostname"));
  await withHost(connect(), async (host) => {
    await host.backupOnce("/etc/hostname");
    await host.writeFileAtomic("/etc/hostname", "first\n");
    await host.backupOnce("/etc/hostname"); // a second run must not back up our own change
    await host.writeFileAtomic("/etc/hostname", "second\n");
    expect(await host.restoreBackup("/etc/hostname")).toBe("restored");

    await host.backupOnce("/etc/did-not-exist");
    await host.writeFileAtomic("/etc/did-not-exist", "ours\n");
    expect(await host.restoreBackup("/etc/did-not-exist")).toBe("removed");
    expect(await host.restoreBackup("/etc/never-touched")).toBe("no-backup");
    expect(await host.readFile("/etc/did-not-exist")).toBeUndefined();
  });
  expect(fs.readFileSync(onHost("etc/hostname")).equals(original)).toBe(true);
  expect(fs.existsSync(onHost("etc/did-not-exist"))).toBe(false);
});

test("a symlinked target is written through: the link stays, the file it names changes, its backup is that file", async () => {
  fs.writeFileSync(onHost("etc/real-grub"), "GRUB_DEFAULT=0\n", { mode: 0o600 });
  fs.symlinkSync("real-grub", onHost("etc/linked-grub"));
  await withHost(connect(), async (host) => {
    await host.backupOnce("/etc/linked-grub");
    await host.writeFileAtomic("/etc/linked-grub", "GRUB_DEFAULT=1\n");
  });
  expect(fs.lstatSync(onHost("etc/linked-grub")).isSymbolicLink()).toBe(true);
  expect(fs.readFileSync(onHost("etc/real-grub"), "utf8")).toBe("GRUB_DEFAULT=1\n");
  expect(fs.statSync(onHost("etc/real-grub")).mode & 0o777).toBe(0o600);
  expect(fs.readFileSync(onHost("var/lib/vfio-host/backup/etc/linked-grub"), "utf8")).toBe("GRUB_DEFAULT=0\n");
  await withHost(connect(), (host) => host.restoreBackup("/etc/linked-grub"));
  expect(fs.lstatSync(onHost("etc/linked-grub")).isSymbolicLink()).toBe(true);
  expect(fs.readFileSync(onHost("etc/real-grub"), "utf8")).toBe("GRUB_DEFAULT=0\n");
});

test("concurrent first backups keep exactly one complete original", async () => {
  const original = "original\n".repeat(50_000);
  fs.writeFileSync(onHost("etc/raced.conf"), original);
  await withHost(connect(), (host) =>
    Promise.all(Array.from({ length: 6 }, () => host.backupOnce("/etc/raced.conf"))),
  );
  await withHost(connect(), (host) => host.writeFileAtomic("/etc/raced.conf", "ours\n"));
  await withHost(connect(), (host) => host.backupOnce("/etc/raced.conf"));
  expect(fs.readFileSync(onHost("var/lib/vfio-host/backup/etc/raced.conf"), "utf8")).toBe(original);
  expect(fs.readdirSync(onHost("var/lib/vfio-host/backup/etc")).filter((f) => f.startsWith(".vfio-host."))).toEqual([]);
  expect(await withHost(connect(), (host) => host.readBackup("/etc/raced.conf"))).toEqual(Buffer.from(original));
  expect(await withHost(connect(), (host) => host.readBackup("/etc/never-backed-up"))).toBeUndefined();
});

test("a backup whose copy fails (disk full) leaves no backup, so the target is not written", async () => {
  const original = "GRUB_CMDLINE_LINUX=\"root=/dev/mapper/vg-root rd.luks.uuid=1234\"\n".repeat(2_000);
  fs.writeFileSync(onHost("etc/full-disk.conf"), original);
  // `cp -p -- SRC DST` as the disk fills up: part of SRC, then an error (first on root's PATH).
  const faultyCp = onHost("usr/local/bin/cp");
  fs.writeFileSync(faultyCp, `#!/bin/sh\nshift 2 # -p --\nhead -c 4096 "$1" > "$2"\necho "cp: error writing '$2': No space left on device" >&2\nexit 1\n`, { mode: 0o755 });
  try {
    await expect(
      withHost(connect(), async (host) => {
        await host.backupOnce("/etc/full-disk.conf");
        await host.writeFileAtomic("/etc/full-disk.conf", "ours\n");
      }),
    ).rejects.toThrow(/No space left on device/);
  } finally {
    fs.rmSync(faultyCp);
  }
  expect(fs.existsSync(onHost("var/lib/vfio-host/backup/etc/full-disk.conf"))).toBe(false);
  expect(fs.readFileSync(onHost("etc/full-disk.conf"), "utf8")).toBe(original);
  // Once there is room again, the backup is whole.
  await withHost(connect(), (host) => host.backupOnce("/etc/full-disk.conf"));
  expect(fs.readFileSync(onHost("var/lib/vfio-host/backup/etc/full-disk.conf"), "utf8")).toBe(original);
});

test("a restore guarded by the hash of our last write keeps a hand edit and its backup", async () => {
  fs.writeFileSync(onHost("etc/guarded.conf"), "original\n");
  await withHost(connect(), async (host) => {
    await host.backupOnce("/etc/guarded.conf");
    await host.writeFileAtomic("/etc/guarded.conf", "ours\n");
  });
  fs.writeFileSync(onHost("etc/guarded.conf"), "ours\nedited by hand\n");
  expect(await withHost(connect(), (host) => host.restoreBackup("/etc/guarded.conf", { ifSha256: sha256Hex("ours\n") }))).toBe("edited");
  expect(fs.readFileSync(onHost("etc/guarded.conf"), "utf8")).toBe("ours\nedited by hand\n");
  expect(fs.readFileSync(onHost("var/lib/vfio-host/backup/etc/guarded.conf"), "utf8")).toBe("original\n");

  fs.writeFileSync(onHost("etc/guarded.conf"), "ours\n");
  expect(await withHost(connect(), (host) => host.restoreBackup("/etc/guarded.conf", { ifSha256: sha256Hex("ours\n") }))).toBe("restored");
  expect(fs.readFileSync(onHost("etc/guarded.conf"), "utf8")).toBe("original\n");
});

test("one run at a time holds the host lock; a second waits, names the holder, and gets it when the first ends", async () => {
  // Two logins stand for two runs: the lock is per process and connection, the flock per host.
  const first = connect();
  const second = connect({ user: "deploy" });
  const order: string[] = [];
  // /run is the test host's own tmpfs: read it over SSH.
  const holder = () => withHost(connect(), async (host) => (await host.readFile(LOCK_PATH + ".holder"))?.toString());
  await withHostLock(first, "stack one, alice@laptop", async () => order.push("first holds"));
  expect(await holder()).toBe("stack one, alice@laptop\n");
  const waiting: string[] = [];
  const log = jest.spyOn(console, "error").mockImplementation((line: string) => void waiting.push(line));
  const secondRun = withHostLock(second, "stack two, bob@desk", async () => order.push("second holds"));
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  expect(order).toEqual(["first holds"]);
  // The first run's process dies: its connection goes, and the lock with it.
  await releaseHostLocksOf(first);
  await secondRun;
  log.mockRestore();
  expect(order).toEqual(["first holds", "second holds"]);
  expect(waiting.join("\n")).toMatch(/waiting up to 120s for another run on this host \(stack one, alice@laptop\)/);
  expect(await holder()).toBe("stack two, bob@desk\n");
  await releaseHostLocks();
});

test("within one run, changes on one host take turns, and a change that takes the lock again inside its turn does not wait for itself", async () => {
  // What the engine does with independent resources: starts them at once. Each marks its start and
  // end in a file on the host, with a second of work between; the file must show them one after another.
  fs.writeFileSync(onHost("var/log/turns.log"), "");
  const change = (name: string) =>
    withHostLock(connect(), "turns-test", () =>
      withHost(connect(), (host) => host.run(["sh", "-c", 'echo "start $1" >> /var/log/turns.log; sleep 1; echo "end $1" >> /var/log/turns.log', "sh", name])),
    );
  const nested = withHostLock(connect(), "turns-test", () => withHostLock(connect(), "turns-test", async () => "nested ran"));
  await Promise.all([change("a"), change("b"), change("c")]);
  expect(await nested).toBe("nested ran");
  const lines = fs.readFileSync(onHost("var/log/turns.log"), "utf8").trim().split("\n");
  // Pairs of one change each, in whatever order their turns came.
  const pairs = [0, 2, 4].map((i) => `${lines[i]} / ${lines[i + 1]}`).sort();
  expect({ lines: lines.length, pairs }).toEqual({ lines: 6, pairs: ["start a / end a", "start b / end b", "start c / end c"] });
  await releaseHostLocks();
});

/** Ends the pooled connection of one login, as a killed process would: its lock holder goes with it. */
async function releaseHostLocksOf(connection: ReturnType<typeof connect>): Promise<void> {
  await withHost(connection, (host) => host.disconnect());
}

test("a pooled connection whose server side died while the link was down is replaced, and the command runs", async () => {
  await closeAllConnections();
  await withHost(connect(), (host) => host.run(["true"]));
  const opened = sshStats().connectionsOpened;
  // The session's sshd dies while no packet can reach this machine: the client is not told.
  await runCommand("ip", ["link", "set", testHost.veth, "down"]);
  for (const pid of childPids(testHost.sshdPid)) process.kill(pid, "SIGKILL");
  await runCommand("ip", ["link", "set", testHost.veth, "up"]);
  const result = await withHost(connect(), (host) => host.run(["echo", "after"]));
  expect(result.stdout).toBe("after\n");
  expect(sshStats().connectionsOpened - opened).toBe(1);
});

test("a non-root login escalates through sudo -n, and only when asked", async () => {
  await withHost(connect({ user: "deploy" }), async (host) => {
    expect((await host.run(["id", "-u"])).stdout.trim()).toBe("0");
    expect((await host.run(["id", "-un"], { escalate: false })).stdout.trim()).toBe("deploy");
    expect((await host.readFile("/etc/shadow"))?.toString()).toContain("root:");
  });
});

test("one pooled connection carries many concurrent commands", async () => {
  await closeAllConnections();
  const before = { stats: sshStats().connectionsOpened, logins: testHost.acceptedLogins() };
  await Promise.all(
    Array.from({ length: 20 }, (_, i) => withHost(connect(), (host) => host.run(["sh", "-c", `sleep 0.2; echo ${i}`]))),
  );
  expect(sshStats().connectionsOpened - before.stats).toBe(1);
  expect(testHost.acceptedLogins() - before.logins).toBe(1);
});

test("commands queued for a free channel keep their connection when the ones before them end together", async () => {
  // Six commands fill the connection's channels and are killed at once, so their ends arrive
  // together while six more wait for a channel (and sshd may still count the six as open when the
  // next six ask for channels): the connection must stay open under the six that then run for
  // longer than a connection may sit idle.
  await closeAllConnections();
  const opened = sshStats().connectionsOpened;
  for (let round = 0; round < 2; round++) {
    const marker = `1000.${process.pid}${round}`;
    const first = Array.from({ length: 6 }, () => withHost(connect(), (host) => host.exec(["sh", "-c", `exec sleep ${marker}`])));
    const second = Array.from({ length: 6 }, (_, i) => withHost(connect(), (host) => host.run(["sh", "-c", `sleep 6; echo ${i}`])));
    const sleepers = () => processesWithCmdline(`sleep\0${marker}\0`);
    while (sleepers().length < 6) await new Promise((r) => setTimeout(r, 50));
    for (const pid of sleepers()) process.kill(pid, "SIGKILL");
    await Promise.all(first);
    expect((await Promise.all(second)).map((r) => r.stdout)).toEqual(["0\n", "1\n", "2\n", "3\n", "4\n", "5\n"]);
  }
  expect(sshStats().connectionsOpened - opened).toBe(1);
});

/** PIDs (as this machine sees them) whose command line is exactly `cmdline`. */
function processesWithCmdline(cmdline: string): number[] {
  return fs.readdirSync("/proc").flatMap((name) => {
    if (!/^\d+$/.test(name)) return [];
    try {
      return fs.readFileSync(`/proc/${name}/cmdline`, "latin1") === cmdline ? [Number(name)] : [];
    } catch {
      return [];
    }
  });
}

test("failures name the command and quote stderr; slow commands time out", async () => {
  await withHost(connect(), async (host) => {
    await expect(host.run(["cat", "/no/such file"])).rejects.toThrow(
      /`cat '\/no\/such file'` exited with 1: cat: '\/no\/such file': No such file or directory/,
    );
    await expect(host.run(["sleep", "5"], { timeoutMs: 500 })).rejects.toThrow("`sleep 5` did not finish within 1s");
  });
});

test("an unreachable host is retried until readyTimeoutSeconds, then a clear error", async () => {
  const started = Date.now();
  await expect(withHost(connect({ port: 2, readyTimeoutSeconds: 3 }), (host) => host.run(["true"]))).rejects.toThrow(
    /root@.*:2: no SSH connection after \d+ attempts in 3s \(last error: .*ECONNREFUSED.*\)/,
  );
  expect(Date.now() - started).toBeGreaterThanOrEqual(1_500);
});

test("sections come back by name in one round trip, whatever the files contain", async () => {
  fs.writeFileSync(onHost("etc/tricky.conf"), "line\n--vfio-host-fake-- os\n\n");
  const before = sshStats().connectionsOpened;
  const facts = await withHost(connect(), (host) =>
    readSections(host, { os: "cat /etc/os-release", tricky: 'cat "$1"', missing: "cat /nope" }, { args: ["/etc/tricky.conf"] }),
  );
  expect(facts.os).toBe(fs.readFileSync(onHost("etc/os-release"), "utf8"));
  expect(facts.tricky).toBe("line\n--vfio-host-fake-- os\n\n");
  expect(facts.missing).toBe("");
  expect(sshStats().connectionsOpened - before).toBeLessThanOrEqual(1);
});

test("a fact read once is shared until anything may have changed the host: a write, the host lock, the end of the connection", async () => {
  // Edited behind the layer's back (as by hand on the host), so only a new read can see the change.
  const edit = (text: string) => fs.writeFileSync(onHost("etc/shared.conf"), text);
  const read = (host: Parameters<Parameters<typeof withHost>[1]>[0]) =>
    readSections(host, { shared: "cat /etc/shared.conf", other: "echo other" }).then((s) => s.shared);
  // As the dynamic provider's process does; any other process reads afresh every time.
  shareReadsInThisProcess();
  edit("first\n");
  await withHost(connect(), async (host) => {
    expect(await read(host)).toBe("first\n");
    edit("second\n");
    // The same snippet, asked alongside a different one, and the same file through readFile, are shared.
    expect(await readSections(host, { shared: "cat /etc/shared.conf" }).then((s) => s.shared)).toBe("first\n");
    expect(await read(host)).toBe("first\n");
    // A command that is not a read: everything read before is forgotten.
    await host.writeFileAtomic("/tmp/unrelated", "x\n");
    expect(await read(host)).toBe("second\n");
    edit("third\n");
    await withHostLock(connect(), "shared-reads-test", async () => expect(await read(host)).toBe("third\n"));
    edit("fourth\n");
    await host.disconnect();
    expect(await read(host)).toBe("fourth\n");
  });
  await releaseHostLocks();
  shareReadsInThisProcess(false);
});

test("a handshake that never comes is given up at readyTimeoutSeconds, not after ssh2's 20 s per attempt", async () => {
  // A server that accepts the connection and never says a word (a host whose sshd hangs while booting).
  const sockets: net.Socket[] = [];
  const silent = net.createServer((socket) => void sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const { port } = silent.address() as net.AddressInfo;
  const started = Date.now();
  try {
    await expect(
      withHost(connect({ host: "127.0.0.1", port, readyTimeoutSeconds: 2 }), (host) => host.run(["true"])),
    ).rejects.toThrow(/root@127\.0\.0\.1:\d+: no SSH connection after \d+ attempts in 2s \(last error: Timed out while waiting for handshake\)/);
    expect(Date.now() - started).toBeLessThan(8_000);
  } finally {
    sockets.forEach((s) => s.destroy());
    await new Promise((resolve) => silent.close(resolve));
  }
});

describe("credentials as people keep them", () => {
  const passphrase = "correct horse battery staple";
  let dir: string;
  /** The test host's client key, unencrypted and encrypted with `passphrase`, as files (0600). */
  let plainKeyFile: string;
  let encryptedKey: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-credentials-"));
    plainKeyFile = path.join(dir, "id_ed25519");
    fs.writeFileSync(plainKeyFile, testHost.privateKey, { mode: 0o600 });
    const encryptedFile = path.join(dir, "id_ed25519_encrypted");
    fs.copyFileSync(plainKeyFile, encryptedFile);
    execFileSync("ssh-keygen", ["-q", "-p", "-P", "", "-N", passphrase, "-f", encryptedFile]);
    encryptedKey = fs.readFileSync(encryptedFile, "utf8");
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Each test logs in afresh, with its own credentials (the pool would keep them apart anyway: sshTrust.test.ts).
  beforeEach(() => closeAllConnections());

  /** Logs in with `extra` instead of the test host's plain key; the login user's name, and how many logins the host accepted. */
  const loginWith = async (extra: Record<string, unknown>) => {
    const before = testHost.acceptedLogins();
    const user = await withHost(connect({ privateKey: undefined, ...extra }), async (host) => (await host.run(["id", "-un"], { escalate: false })).stdout.trim());
    return { user, logins: testHost.acceptedLogins() - before };
  };

  test("a passphrase-protected private key logs in with its passphrase", async () => {
    expect(encryptedKey).not.toBe(testHost.privateKey);
    expect(await loginWith({ privateKey: encryptedKey, passphrase })).toEqual({ user: "root", logins: 1 });
  });

  test("a wrong or missing passphrase fails at once, naming the key at fault", async () => {
    const started = Date.now();
    const failure = (extra: Record<string, unknown>) => withHost(connect({ privateKey: encryptedKey, ...extra }), (host) => host.run(["true"]));
    await expect(failure({ passphrase: "not it" })).rejects.toThrow(
      /: the private key's passphrase \(vfio-host:sshPrivateKeyPassphrase\) does not decrypt the private key \(OpenSSH key integrity check failed -- bad passphrase\?\)/,
    );
    await expect(failure({})).rejects.toThrow(/: the private key \(vfio-host:sshPrivateKey\) is encrypted and has no passphrase; set it as a secret/);
    // Not retried until readyTimeoutSeconds (300 s): waiting cannot make a key decrypt.
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  describe("through a real ssh-agent", () => {
    let agent: ChildProcess;
    let socket: string;
    const savedSocket = process.env.SSH_AUTH_SOCK;

    beforeAll(async () => {
      socket = path.join(dir, "agent.sock");
      agent = await startSshAgent(socket);
      process.env.SSH_AUTH_SOCK = socket;
    });
    afterAll(() => {
      if (savedSocket === undefined) delete process.env.SSH_AUTH_SOCK;
      else process.env.SSH_AUTH_SOCK = savedSocket;
      if (agent.pid !== undefined && agent.exitCode === null) process.kill(agent.pid, "SIGTERM");
    });
    const sshAdd = (...args: string[]) => execFileSync("ssh-add", args, { env: { ...process.env, SSH_AUTH_SOCK: socket }, stdio: "pipe" });

    test("an agent without the key is refused, and the message names the agent's socket", async () => {
      await expect(loginWith({ agent: true })).rejects.toThrow(
        new RegExp(`: the host refused the login with the keys of the ssh-agent at ${socket.replace(/[.]/g, "\\.")} \\(vfio-host:sshAgent\\); check that its public key is in ~root/\\.ssh/authorized_keys`),
      );
    });

    test("the agent's key logs in, with no private key in the connection", async () => {
      sshAdd(plainKeyFile);
      expect(await loginWith({ agent: true })).toEqual({ user: "root", logins: 1 });
      sshAdd("-D");
    });

    test("an agent that is not there, or not named, fails at once with what to do", async () => {
      process.env.SSH_AUTH_SOCK = path.join(dir, "no-agent.sock");
      await expect(loginWith({ agent: true })).rejects.toThrow(/: the ssh-agent at SSH_AUTH_SOCK=.*no-agent\.sock \(vfio-host:sshAgent\) failed: Failed to connect to agent; is it running\?/);
      delete process.env.SSH_AUTH_SOCK;
      await expect(loginWith({ agent: true })).rejects.toThrow(/: the ssh-agent is to be used \(vfio-host:sshAgent\) but SSH_AUTH_SOCK is not set where pulumi runs/);
      process.env.SSH_AUTH_SOCK = socket;
    });
  });
});
