// What the SSH layer trusts, against real OpenSSH servers (each in its own namespace): pooled
// connections keyed by what they trust, RSA host keys over SHA-2, trust errors reported at once,
// and `npm run trust` pinning a key into a real stack's config through the Pulumi CLI.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ConnectionSchema, fingerprintOfKeyBlob } from "../../providers/ssh/connection";
import { closeAllConnections, sshStats, withHost } from "../../providers/ssh/host";
import { pulumiCli, pulumiEnv } from "../../scripts/pulumiEnv";
import { parseTrustArgs, runTrust, TrustArgs } from "../../scripts/trust";
import { startTestHost, TestHost } from "../testhost/testHost";
import { generateKeyPair } from "../sshKeys";

jest.setTimeout(120_000);

/** ed25519, ECDSA and RSA host keys, as a stock Debian sshd has them. */
let multiKey: TestHost;
/** One RSA host key and OpenSSH's default algorithms: rsa-sha2-512/256, never ssh-rsa (SHA-1). */
let rsaOnly: TestHost;

beforeAll(async () => {
  multiKey = await startTestHost({ hostKeyTypes: ["ed25519", "ecdsa", "rsa"] });
  rsaOnly = await startTestHost({ hostKeyTypes: ["rsa"] });
});
afterAll(async () => {
  await closeAllConnections();
  await multiKey?.stop();
  await rsaOnly?.stop();
});
beforeEach(() => closeAllConnections());

const READY_TIMEOUT_SECONDS = 30;
const connect = (testHost: TestHost, extra: Record<string, unknown> = {}) =>
  ConnectionSchema.parse({ host: testHost.host, port: testHost.port, privateKey: testHost.privateKey, hostKey: testHost.hostKey, readyTimeoutSeconds: READY_TIMEOUT_SECONDS, ...extra });
const fingerprint = (line: string) => fingerprintOfKeyBlob(Buffer.from(line.split(" ")[1], "base64"));
const keyOf = (testHost: TestHost, type: string) => testHost.hostKeys.find((line) => line.startsWith(type))!;
const whoami = (connection: ReturnType<typeof connect>) => withHost(connection, async (host) => (await host.run(["id", "-un"])).stdout.trim());

/** Runs `fn` and returns how many connections the layer opened and the host accepted meanwhile. */
async function counting(testHost: TestHost, fn: () => Promise<unknown>): Promise<{ opened: number; logins: number }> {
  const before = { opened: sshStats().connectionsOpened, logins: testHost.acceptedLogins() };
  await fn();
  return { opened: sshStats().connectionsOpened - before.opened, logins: testHost.acceptedLogins() - before.logins };
}

describe("RSA host keys", () => {
  test("a pinned RSA key connects to a host that refuses ssh-rsa (SHA-1) signatures", async () => {
    expect(rsaOnly.hostKey).toMatch(/^ssh-rsa /);
    // A refused algorithm fails every attempt: logging in at all is the proof.
    expect(await whoami(connect(rsaOnly, { readyTimeoutSeconds: 10 }))).toBe("root");
  });

  test("the RSA key of a host with several keys is the one checked when it is the one pinned", async () => {
    expect(await whoami(connect(multiKey, { hostKey: keyOf(multiKey, "ssh-rsa") }))).toBe("root");
  });
});

describe("pooled connections are keyed by what they trust", () => {
  test("two pins of the one host never share a connection", async () => {
    const ed25519 = connect(multiKey, { hostKey: keyOf(multiKey, "ssh-ed25519") });
    const ecdsa = connect(multiKey, { hostKey: keyOf(multiKey, "ecdsa-sha2-nistp256") });
    const counted = await counting(multiKey, () =>
      withHost(ed25519, async (first) => {
        await first.run(["true"]);
        // The first connection is open and idle-pooled while the second resource connects.
        await withHost(ecdsa, (second) => second.run(["true"]));
        await withHost(ed25519, (again) => again.run(["true"]));
      }),
    );
    expect(counted).toEqual({ opened: 2, logins: 2 });
  });

  test("a pin the host does not match is refused even while another resource's connection to it is open", async () => {
    await withHost(connect(multiKey), async (open) => {
      await open.run(["true"]);
      const wrong = connect(multiKey, { hostKey: keyOf(rsaOnly, "ssh-rsa") });
      await expect(withHost(wrong, (host) => host.run(["true"]))).rejects.toThrow(/host key mismatch, refusing to connect/);
    });
  });

  test("accepting any key and pinning one are two connections, as are two credentials of one user", async () => {
    const passphrase = "a passphrase";
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-trust-key-"));
    try {
      const keyFile = path.join(dir, "id_ed25519");
      fs.writeFileSync(keyFile, multiKey.privateKey, { mode: 0o600 });
      execFileSync("ssh-keygen", ["-q", "-p", "-P", "", "-N", passphrase, "-f", keyFile]);
      const encrypted = fs.readFileSync(keyFile, "utf8");
      const counted = await counting(multiKey, async () => {
        await whoami(connect(multiKey));
        await whoami(connect(multiKey, { hostKey: undefined, insecureAcceptAnyHostKey: true }));
        await whoami(connect(multiKey, { privateKey: encrypted, passphrase }));
      });
      expect(counted).toEqual({ opened: 3, logins: 3 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("trust errors are reported at once, with what was offered and what was expected", () => {
  /** The error of one command through `connection`. */
  async function failure(connection: ReturnType<typeof connect>): Promise<string> {
    const error = await withHost(connection, (host) => host.run(["true"])).then(
      () => new Error("connected"),
      (e: Error) => e,
    );
    return error.message;
  }

  test("a host key that changed: both fingerprints, what to check on the console, how to pin again", async () => {
    const pinned = keyOf(rsaOnly, "ssh-rsa");
    const message = await failure(connect(multiKey, { hostKey: pinned }));
    expect(message).not.toContain("no SSH connection after");
    expect(message).toContain(`root@${multiKey.host}:22: host key mismatch, refusing to connect.`);
    expect(message).toContain(`Pinned (vfio-host:hostKey): RSA ${fingerprint(pinned)}`);
    expect(message).toContain(`the host presented: RSA ${fingerprint(keyOf(multiKey, "ssh-rsa"))}`);
    expect(message).toContain("ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub");
    expect(message).toContain("npm run trust -- --stack");
  });

  test("a pinned key type the host does not offer: the algorithms on both sides", async () => {
    const message = await failure(connect(rsaOnly, { hostKey: keyOf(multiKey, "ssh-ed25519") }));
    // Retried, it would end as "no SSH connection after N attempts" at the timeout; a loaded machine
    // may still spend a handshake timeout on the first attempt, so the clock proves nothing here.
    expect(message).toMatch(new RegExp(`^root@${rsaOnly.host.replace(/\./g, "\\.")}:22: the host has no key of the pinned type`));
    expect(message).not.toContain("no SSH connection after");
    expect(message).toContain("it offers rsa-sha2-512, rsa-sha2-256");
    expect(message).toContain("the pin (vfio-host:hostKey) needs ssh-ed25519");
    expect(message).toContain("npm run trust -- --stack");
  });

  test("a login the host refuses", async () => {
    const stranger = generateKeyPair("ed25519").private;
    const message = await failure(connect(multiKey, { privateKey: stranger }));
    expect(message).not.toContain("no SSH connection after");
    expect(message).toMatch(/: the host refused the login with the private key \(vfio-host:sshPrivateKey\)/);
  });
});

describe("npm run trust", () => {
  const stack = "trusted";
  let projectDir: string;
  let backendDir: string;
  let env: Record<string, string>;
  const pulumi = (args: string[]) => pulumiCli(env, args, { cwd: projectDir });
  const config = () => JSON.parse(pulumi(["config", "--json", "-s", stack])) as Record<string, { value: string }>;

  beforeAll(() => {
    // A project of its own, so no stack file lands in the checkout's stacks/.
    projectDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-trust-project-"));
    backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-trust-state-"));
    fs.writeFileSync(path.join(projectDir, "Pulumi.yaml"), "name: vfio-host\nruntime: nodejs\nstackConfigDir: stacks\n");
    fs.mkdirSync(path.join(projectDir, "stacks"));
    env = pulumiEnv(backendDir);
    pulumi(["stack", "init", stack]);
  });
  afterAll(() => {
    for (const dir of [projectDir, backendDir]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** One run of the command: what it printed, its error, the questions it asked (answered with `answer`, or no terminal). */
  async function trust(argv: string[], answer?: boolean) {
    let out = "";
    const questions: string[] = [];
    const confirm = async (question: string) => (questions.push(question), answer!);
    const error = await runTrust(parseTrustArgs(argv) as TrustArgs, { out: (text) => (out += text), pulumi, ...(answer !== undefined ? { confirm } : {}) }).then(
      () => undefined,
      (e: Error) => e.message,
    );
    return { out, error, questions };
  }
  /** OpenSSH's own view of the host's keys. */
  const keyscan = (testHost: TestHost) =>
    execFileSync("sh", ["-c", 'ssh-keyscan -p "$2" "$1" 2>/dev/null | ssh-keygen -lf -', "sh", testHost.host, String(testHost.port)], { encoding: "utf8" })
      .trim()
      .split("\n");
  const listed = (out: string) => out.split("\n").filter((line) => line.startsWith("  ")).map((line) => line.trim());

  test("--host lists every key the host offers exactly as `ssh-keyscan | ssh-keygen -lf -` does, and writes nothing", async () => {
    const many = await trust(["--host", multiKey.host]);
    expect(many.error).toBeUndefined();
    expect(listed(many.out).map((line) => line.replace(/.*\(/, "("))).toEqual(["(ED25519)", "(ECDSA)", "(RSA)"]);
    expect([...listed(many.out)].sort()).toEqual(keyscan(multiKey).sort());
    expect(many.out).toContain(`To pin the ED25519 key: npm run pulumi -- config set hostKey '${keyOf(multiKey, "ssh-ed25519")}' -s STACK`);
    const rsa = await trust(["--host", rsaOnly.host, "--port", "22"]);
    expect(listed(rsa.out)).toEqual(keyscan(rsaOnly));
    expect(listed(rsa.out)[0]).toMatch(/^3072 SHA256:\S+ \S+ \(RSA\)$/);
  });

  test("--stack --expect pins the key read on the console, drops accept-any, and the pin connects", async () => {
    expect((await trust(["--stack", stack, "--yes"])).error).toMatch(/^stack trusted has no vfio-host:host; set it first/);
    pulumi(["config", "set", "-s", stack, "vfio-host:host", multiKey.host]);
    pulumi(["config", "set", "-s", stack, "vfio-host:insecureTrustOnFirstUse", "true"]);
    const rsa = keyOf(multiKey, "ssh-rsa");
    const pinned = await trust(["--stack", stack, "--expect", fingerprint(rsa)]);
    expect(pinned).toMatchObject({ error: undefined, questions: [] });
    expect(pinned.out).toContain(`Pinned: vfio-host:hostKey of stack trusted is the RSA key ${fingerprint(rsa)}; removed vfio-host:insecureTrustOnFirstUse.`);
    expect(config()["vfio-host:hostKey"].value).toBe(rsa);
    expect(config()["vfio-host:insecureTrustOnFirstUse"]).toBeUndefined();
    expect(await whoami(connect(multiKey, { hostKey: config()["vfio-host:hostKey"].value }))).toBe("root");
    expect((await trust(["--stack", stack, "--type", "rsa"])).out).toContain(`vfio-host:hostKey of stack trusted is already this RSA key (${fingerprint(rsa)}); nothing to change.`);
  });

  test("refuses a fingerprint the host does not have, asks before pinning, and writes nothing without a yes", async () => {
    const before = config()["vfio-host:hostKey"].value;
    const stranger = fingerprint(rsaOnly.hostKey);
    expect((await trust(["--stack", stack, "--expect", stranger])).error).toBe(
      `none of the keys ${multiKey.host}:22 offers has the fingerprint ${stranger}; nothing was pinned. ` +
        "Read the fingerprint again on the host's console; if it is right, something else answers at this address",
    );
    const ed25519 = fingerprint(keyOf(multiKey, "ssh-ed25519"));
    const check = `\`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on the host's console must print ${ed25519}`;
    expect((await trust(["--stack", stack, "--type", "ed25519"])).error).toBe(
      `not pinning without a confirmation and there is no terminal to ask: check that ${check}, then pass --expect ${ed25519} (or --yes)`,
    );
    const declined = await trust(["--stack", stack, "--type", "ed25519"], false);
    expect(declined.questions).toEqual([`Pin the ED25519 key ${ed25519} as vfio-host:hostKey of stack trusted? First check that ${check}. [y/N] `]);
    expect(declined.error).toBe("not pinned; nothing was written");
    expect(config()["vfio-host:hostKey"].value).toBe(before);

    expect((await trust(["--stack", stack, "--type", "ed25519"], true)).error).toBeUndefined();
    expect(config()["vfio-host:hostKey"].value).toBe(keyOf(multiKey, "ssh-ed25519"));
  });

  test("a pin the host no longer matches is said so, and --yes pins the host's key for scripts", async () => {
    pulumi(["config", "set", "-s", stack, "vfio-host:hostKey", rsaOnly.hostKey]);
    const repinned = await trust(["--stack", stack, "--yes"]);
    expect(repinned.out).toContain(`The pinned vfio-host:hostKey, ${fingerprint(rsaOnly.hostKey)}, is none of these: the host's keys changed`);
    expect(repinned.error).toBeUndefined();
    expect(config()["vfio-host:hostKey"].value).toBe(keyOf(multiKey, "ssh-ed25519"));
  });
});
