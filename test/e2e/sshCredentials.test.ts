// SSH credentials as people keep them, through the real CLI (Automation API) against the sshd test
// host: the keys of an ssh-agent, used only by the dynamic provider process the engine starts, so
// SSH_AUTH_SOCK must reach that process; a private key with a passphrase, both secrets that neither
// the stack's file nor its state may hold in plain text; and `npm run discover -- --stack NAME`,
// which reads a host stack's own config.
import { ChildProcess, execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { ConfigMap, Stack } from "@pulumi/pulumi/automation";
import { startSshAgent } from "../testhost/sshAgent";
import { startTestHost, TestHost } from "../testhost/testHost";
import { localStack, projectRoot, pulumiCli, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(600_000);

/** The HostFile fixture: its keys are in the namespace of its project, vfio-host-proof. */
const workDir = path.join(projectRoot, "test/e2e/fixtures/hostfile");
const FIXTURE_STACKS = ["agent", "passphrase"];
/** A stack of the project itself, its config in stacks/ as a user's host stack. */
const DISCOVER_STACK = "discover-e2e";
const motdPath = "etc/motd";
const tunPath = "etc/modules-load.d/tun.conf";
// Random, so that "not in the state" cannot pass by chance.
const passphrase = `passphrase-${randomBytes(12).toString("base64url")}`;
const wrongPassphrase = `wrong-${randomBytes(12).toString("base64url")}`;
/** A frame of a JavaScript stack trace, which a config or login problem must not print. */
const jsStack = /\n\s+at (Object\.|\S+ \(\S+\.js:\d+)|\.(ts|js):\d+:\d+/;

let testHost: TestHost;
let backendDir: string;
let keyDir: string;
let env: Record<string, string>;
let agent: ChildProcess;
let agentSocket: string;
let encryptedKey: string;
const shellSocket = process.env.SSH_AUTH_SOCK;

beforeAll(async () => {
  // What reaches the CLI is what a test gives it, not the agent of the shell that runs jest.
  delete process.env.SSH_AUTH_SOCK;
  testHost = await startTestHost();
  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-e2e-credentials-"));
  env = pulumiEnv(backendDir);
  keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-e2e-keys-"));
  const plainKeyFile = path.join(keyDir, "id_ed25519");
  fs.writeFileSync(plainKeyFile, testHost.privateKey, { mode: 0o600 });
  const encryptedKeyFile = path.join(keyDir, "id_ed25519_passphrase");
  fs.copyFileSync(plainKeyFile, encryptedKeyFile);
  execFileSync("ssh-keygen", ["-q", "-p", "-P", "", "-N", passphrase, "-f", encryptedKeyFile]);
  encryptedKey = fs.readFileSync(encryptedKeyFile, "utf8");

  agentSocket = path.join(keyDir, "agent.sock");
  agent = await startSshAgent(agentSocket);
  execFileSync("ssh-add", ["-q", plainKeyFile], { env: { ...process.env, SSH_AUTH_SOCK: agentSocket }, stdio: "pipe" });
});

afterAll(async () => {
  if (agent?.pid !== undefined && agent.exitCode === null) process.kill(agent.pid, "SIGTERM");
  if (shellSocket !== undefined) process.env.SSH_AUTH_SOCK = shellSocket;
  await testHost?.stop();
  for (const dir of [backendDir, keyDir]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
  // Left by a failed run: the stacks' config files, which a passing run removes with the stacks.
  for (const name of FIXTURE_STACKS) fs.rmSync(path.join(workDir, `Pulumi.${name}.yaml`), { force: true });
  fs.rmSync(path.join(projectRoot, `stacks/Pulumi.${DISCOVER_STACK}.yaml`), { force: true });
});

const label = () => `root@${testHost.host}:${testHost.port}`;
const onHost = (rel: string) => path.join(testHost.rootfs, rel);

/** The connection keys of the test host but the credentials, in `namespace`. */
function hostConfig(credentials: ConfigMap, namespace = ""): ConfigMap {
  const keys: ConfigMap = {
    host: { value: testHost.host },
    port: { value: String(testHost.port) },
    user: { value: "root" },
    hostKey: { value: testHost.hostKey },
    ...credentials,
  };
  return Object.fromEntries(Object.entries(keys).map(([key, value]) => [namespace + key, value]));
}

/** The fixture's stack `name`, whose CLI runs with `extraEnv` on top of the project's environment. */
async function fixtureStack(name: string, extraEnv: Record<string, string> = {}): Promise<Stack> {
  return localStack(workDir, name, { ...env, ...extraEnv });
}

/** The error message of a run that must fail, or "" when it succeeded (which every expectation on it then fails). */
const failureOf = (run: Promise<unknown>): Promise<string> =>
  run.then(
    () => "",
    (err: Error) => err.message,
  );

/** The lines of a key file's body: any one of them in a file means the key is there. */
const keyLines = (key: string) => key.split("\n").filter((line) => line.length > 0 && !line.startsWith("-----"));

/** `pulumi stack export --show-secrets`: a secret output is an object whose plaintext is its JSON. */
interface Exported {
  deployment: { resources: { outputs?: { connection?: { plaintext?: string } } }[] };
}

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).flatMap((rel) => {
    const file = path.join(dir, rel);
    return fs.statSync(file).isFile() ? [file] : [];
  });
}

test("sshAgent: true logs in with the agent's key where pulumi runs; without an agent, preview stops at once naming vfio-host:sshAgent", async () => {
  const withAgent = await fixtureStack("agent", { SSH_AUTH_SOCK: agentSocket });
  await withAgent.setAllConfig(hostConfig({ sshAgent: { value: "true" } }));
  expect(Object.keys(await withAgent.getAllConfig()).filter((key) => /sshPrivateKey|sshPassword/.test(key))).toEqual([]);
  const originalMotd = fs.readFileSync(onHost(motdPath));

  const preview = await withAgent.preview({ diff: true });
  expect(preview.changeSummary).toEqual({ create: 3 });
  expect(preview.stdout).toContain("/etc/modules-load.d/tun.conf: create (4 bytes)");
  const loginsBefore = testHost.acceptedLogins();
  expect((await withAgent.up()).summary.result).toBe("succeeded");
  expect(fs.readFileSync(onHost(motdPath), "utf8")).toBe("Managed by vfio-host\n");
  expect(fs.readFileSync(onHost(tunPath), "utf8")).toBe("tun\n");
  expect(testHost.acceptedLogins() - loginsBefore).toBe(1);
  // The connection recorded (decrypted here) says to use an agent; the socket is this machine's and stays out.
  const recorded = pulumiCli(env, ["stack", "export", "--show-secrets", "-s", "agent"], { cwd: workDir });
  const connections = (JSON.parse(recorded) as Exported).deployment.resources.flatMap((r) =>
    r.outputs?.connection?.plaintext ? [JSON.parse(r.outputs.connection.plaintext) as Record<string, unknown>] : [],
  );
  expect(connections).toHaveLength(2);
  for (const connection of connections) {
    expect(connection).toMatchObject({ agent: true, host: testHost.host });
    expect(Object.keys(connection).filter((key) => ["privateKey", "passphrase", "password"].includes(key))).toEqual([]);
  }
  expect(recorded).not.toContain(agentSocket);

  // The same stack from a shell without an agent, then with SSH_AUTH_SOCK naming no socket. Each
  // fails on its first attempt: readyTimeoutSeconds is 300 s, and a login that waited for the agent
  // to appear would take that long. The SSH layer names the key as a host stack spells it
  // (vfio-host:sshAgent); this fixture keeps its keys under its own project, vfio-host-proof.
  const loginsBeforeFailures = testHost.acceptedLogins();
  const started = Date.now();
  const unset = await failureOf((await fixtureStack("agent")).preview());
  expect(unset).toContain(
    `${label()}: the ssh-agent is to be used (vfio-host:sshAgent) but SSH_AUTH_SOCK is not set where pulumi runs; ` +
      'start one and add the key in that shell (eval "$(ssh-agent)"; ssh-add ~/.ssh/id_ed25519), or set sshPrivateKey instead',
  );
  const missingSocket = path.join(keyDir, "no-agent.sock");
  const nowhere = await failureOf((await fixtureStack("agent", { SSH_AUTH_SOCK: missingSocket })).preview());
  expect(nowhere).toContain(
    `${label()}: the ssh-agent at SSH_AUTH_SOCK=${missingSocket} (vfio-host:sshAgent) failed: Failed to connect to agent; ` +
      "is it running? `ssh-add -l` in the shell that runs pulumi lists its keys",
  );
  const seconds = (Date.now() - started) / 1000;
  console.log(`two previews failing for want of an agent took ${seconds.toFixed(1)} s`);
  expect(seconds).toBeLessThan(120);
  for (const output of [unset, nowhere]) {
    expect(output).not.toContain("no SSH connection after");
    expect(output).not.toMatch(jsStack);
  }
  expect(testHost.acceptedLogins()).toBe(loginsBeforeFailures);

  const destroy = await withAgent.destroy();
  expect(destroy.summary.result).toBe("succeeded");
  expect(fs.readFileSync(onHost(motdPath)).equals(originalMotd)).toBe(true);
  expect(fs.existsSync(onHost(tunPath))).toBe(false);
  await withAgent.workspace.removeStack("agent");
});

test("a passphrase-protected key with the passphrase as a secret: up works, a wrong or missing passphrase fails naming the key, and neither is stored in plain text", async () => {
  const stack = await fixtureStack("passphrase");
  await stack.setAllConfig(
    hostConfig({
      sshPrivateKey: { value: encryptedKey, secret: true },
      sshPrivateKeyPassphrase: { value: passphrase, secret: true },
    }),
  );
  expect(encryptedKey).toContain("BEGIN OPENSSH PRIVATE KEY");
  expect(encryptedKey).not.toBe(testHost.privateKey);

  expect((await stack.preview()).changeSummary).toEqual({ create: 3 });
  expect((await stack.up()).summary.result).toBe("succeeded");
  expect(fs.readFileSync(onHost(tunPath), "utf8")).toBe("tun\n");

  // The stack's file, every file of its state (checkpoints, history, backups) and `pulumi stack export`.
  const stackFile = fs.readFileSync(path.join(workDir, "Pulumi.passphrase.yaml"), "utf8");
  expect(stackFile).toMatch(/vfio-host-proof:sshPrivateKey:\n\s+secure: v1:/);
  expect(stackFile).toMatch(/vfio-host-proof:sshPrivateKeyPassphrase:\n\s+secure: v1:/);
  const stored = [stackFile, ...filesUnder(backendDir).map((file) => fs.readFileSync(file, "utf8")), pulumiCli(env, ["stack", "export", "-s", "passphrase"], { cwd: workDir })];
  console.log(`searched ${stored.length} texts (the stack file, the backend's files, stack export) for the passphrase and the key`);
  for (const text of stored) {
    expect(text).not.toContain(passphrase);
    expect(text).not.toContain("PRIVATE KEY");
    for (const line of [...keyLines(encryptedKey), ...keyLines(testHost.privateKey)]) expect(text).not.toContain(line);
  }

  // Checked by the program before any resource is registered: nothing is deleted, and waiting
  // cannot make a key decrypt, so there is no retry.
  await stack.setConfig("sshPrivateKeyPassphrase", { value: wrongPassphrase, secret: true });
  const loginsBefore = testHost.acceptedLogins();
  const wrong = await failureOf(stack.up());
  expect(wrong).toContain("error: The stack config has a problem:\n");
  expect(wrong).toContain(
    "vfio-host-proof:sshPrivateKeyPassphrase: does not decrypt the private key " +
      "(OpenSSH key integrity check failed -- bad passphrase?); set the key's own passphrase",
  );
  expect(wrong).not.toContain(wrongPassphrase);
  expect(wrong).not.toMatch(jsStack);
  expect(fs.readFileSync(onHost(tunPath), "utf8")).toBe("tun\n");

  await stack.removeConfig("sshPrivateKeyPassphrase");
  const missing = await failureOf(stack.preview());
  expect(missing).toContain(
    "vfio-host-proof:sshPrivateKey: is encrypted and has no passphrase; set it as a secret " +
      "(`pulumi config set --secret sshPrivateKeyPassphrase`), or load the key into your ssh-agent and use it (sshAgent: true)",
  );
  expect(testHost.acceptedLogins()).toBe(loginsBefore);

  await stack.setConfig("sshPrivateKeyPassphrase", { value: passphrase, secret: true });
  expect((await stack.destroy()).summary.result).toBe("succeeded");
  expect(fs.existsSync(onHost(tunPath))).toBe(false);
  await stack.workspace.removeStack("passphrase");
});

test("`npm run discover -- --stack NAME` logs in with the stack's own config (a key with a passphrase, or the agent) and prints the discovery", async () => {
  const stack = await localStack(projectRoot, DISCOVER_STACK, env);
  await stack.setAllConfig(
    hostConfig(
      {
        sshPrivateKey: { value: encryptedKey, secret: true },
        sshPrivateKeyPassphrase: { value: passphrase, secret: true },
      },
      "vfio-host:",
    ),
  );
  const run = promisify(execFile);
  const cliEnv = (extra: Record<string, string> = {}) => ({ ...process.env, ...env, ...extra });
  /** The program `npm run discover` builds and runs, without building it again; its output, or its failure's. */
  const discover = (extra?: Record<string, string>) =>
    run(process.execPath, ["dist/scripts/discover.js", "--stack", DISCOVER_STACK], { cwd: projectRoot, env: cliEnv(extra) }).then(
      ({ stdout }) => ({ code: 0, stdout, stderr: "" }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );
  // The bare test host: an empty /sys, so no IOMMU groups and no USB, and a root on overlayfs.
  const expectDiscovery = (stdout: string) => {
    expect(stdout).toContain(`IOMMU groups of ${label()}:\nThe IOMMU is off on ${label()}`);
    expect(stdout).toContain("/sys/kernel/iommu_groups is empty");
    expect(stdout).toContain(`USB buses:\nNo USB controllers on ${label()}.`);
    expect(stdout).toContain("Notes:\n- / on overlay overlay cannot be traced to PCI devices: overlay is not a block device on the host.");
    expect(stdout).not.toContain("Stack config for IOMMU group");
  };

  const loginsBefore = testHost.acceptedLogins();
  const { stdout } = await run("npm", ["run", "--silent", "discover", "--", "--stack", DISCOVER_STACK], { cwd: projectRoot, env: cliEnv() });
  console.log(`npm run discover -- --stack ${DISCOVER_STACK}:\n${stdout}`);
  expectDiscovery(stdout);
  expect(testHost.acceptedLogins() - loginsBefore).toBe(1);

  await stack.setConfig("vfio-host:sshPrivateKeyPassphrase", { value: wrongPassphrase, secret: true });
  const wrong = await discover();
  expect(wrong.code).toBe(1);
  expect(wrong.stderr).toContain(
    `discover: stack ${DISCOVER_STACK}: The stack config has a problem:\n  vfio-host:sshPrivateKeyPassphrase: does not decrypt the private key`,
  );
  expect(wrong.stderr + wrong.stdout).not.toContain(wrongPassphrase);
  expect(wrong.stderr).not.toMatch(jsStack);

  await stack.removeConfig("vfio-host:sshPrivateKey");
  await stack.removeConfig("vfio-host:sshPrivateKeyPassphrase");
  await stack.setConfig("vfio-host:sshAgent", { value: "true" });
  const throughAgent = await discover({ SSH_AUTH_SOCK: agentSocket });
  expect(throughAgent.stderr).toBe("");
  expectDiscovery(throughAgent.stdout);
  expect(testHost.acceptedLogins() - loginsBefore).toBe(2);

  await stack.workspace.removeStack(DISCOVER_STACK);
  expect(fs.existsSync(path.join(projectRoot, `stacks/Pulumi.${DISCOVER_STACK}.yaml`))).toBe(false);
});
