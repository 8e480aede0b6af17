// What the SSH layer trusts, against real OpenSSH servers (each in its own namespace): pooled
// connections keyed by what they trust, RSA host keys over SHA-2, trust errors reported at once.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { utils } from "ssh2";
import { ConnectionSchema, fingerprintOfKeyBlob } from "../../providers/ssh/connection";
import { closeAllConnections, sshStats, withHost } from "../../providers/ssh/host";
import { startTestHost, TestHost } from "../testhost/testHost";

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

const connect = (testHost: TestHost, extra: Record<string, unknown> = {}) =>
  ConnectionSchema.parse({ host: testHost.host, port: testHost.port, privateKey: testHost.privateKey, hostKey: testHost.hostKey, readyTimeoutSeconds: 30, ...extra });
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
    const started = Date.now();
    expect(await whoami(connect(rsaOnly, { readyTimeoutSeconds: 10 }))).toBe("root");
    expect(Date.now() - started).toBeLessThan(5_000);
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
  /** The error of one command through `connection`, and how long it took to come. */
  async function failure(connection: ReturnType<typeof connect>): Promise<{ message: string; ms: number }> {
    const started = Date.now();
    const error = await withHost(connection, (host) => host.run(["true"])).then(
      () => new Error("connected"),
      (e: Error) => e,
    );
    return { message: error.message, ms: Date.now() - started };
  }

  test("a host key that changed: both fingerprints, what to check on the console, how to pin again", async () => {
    const pinned = keyOf(rsaOnly, "ssh-rsa");
    const { message, ms } = await failure(connect(multiKey, { hostKey: pinned }));
    expect(ms).toBeLessThan(5_000);
    expect(message).toContain(`root@${multiKey.host}:22: host key mismatch, refusing to connect.`);
    expect(message).toContain(`pinned (vfio-host:hostKey): RSA ${fingerprint(pinned)}`);
    expect(message).toContain(`the host presented: RSA ${fingerprint(keyOf(multiKey, "ssh-rsa"))}`);
    expect(message).toContain("ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub");
    expect(message).toContain("npm run trust -- --stack");
  });

  test("a pinned key type the host does not offer: the algorithms on both sides", async () => {
    const { message, ms } = await failure(connect(rsaOnly, { hostKey: keyOf(multiKey, "ssh-ed25519") }));
    expect(ms).toBeLessThan(5_000);
    expect(message).toMatch(new RegExp(`root@${rsaOnly.host.replace(/\./g, "\\.")}:22: the host has no key of the pinned type`));
    expect(message).toContain("it offers rsa-sha2-512, rsa-sha2-256");
    expect(message).toContain("the pin (vfio-host:hostKey) needs ssh-ed25519");
    expect(message).toContain("npm run trust -- --stack");
  });

  test("a login the host refuses", async () => {
    const stranger = utils.generateKeyPairSync("ed25519").private;
    const { message, ms } = await failure(connect(multiKey, { privateKey: stranger }));
    expect(ms).toBeLessThan(5_000);
    expect(message).toMatch(/: the host refused the login with the private key \(vfio-host:sshPrivateKey\)/);
  });
});
