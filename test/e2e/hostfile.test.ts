// The engine end to end: the real Pulumi CLI (Automation API, local program) drives the HostFile
// dynamic resource over the project's SSH layer against a real sshd in its own namespace and root.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Stack } from "@pulumi/pulumi/automation";
import { startTestHost, TestHost } from "../testhost/testHost";
import { localStack, projectRoot, pulumiCli, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(600_000);

const workDir = path.join(projectRoot, "test/e2e/fixtures/hostfile");
const motdPath = "etc/motd";
const tunPath = "etc/modules-load.d/tun.conf";

let testHost: TestHost;
let backendDir: string;
let env: Record<string, string>;

beforeAll(async () => {
  testHost = await startTestHost();
  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-e2e-"));
  env = pulumiEnv(backendDir);
});

afterAll(async () => {
  await testHost?.stop();
  fs.rmSync(backendDir, { recursive: true, force: true });
});

async function stackFor(name: string, hostKey: string): Promise<Stack> {
  const stack = await localStack(workDir, name, env);
  await stack.setAllConfig({
    host: { value: testHost.host },
    port: { value: String(testHost.port) },
    user: { value: "root" },
    hostKey: { value: hostKey },
    sshPrivateKey: { value: testHost.privateKey, secret: true },
  });
  return stack;
}

const onHost = (rel: string) => path.join(testHost.rootfs, rel);
const pristine = (rel: string) => path.join(testHost.pristineRootfs, rel);

test("preview, up, up again, refresh and destroy leave the host byte-identical", async () => {
  const stack = await stackFor("proof", testHost.hostKey);
  const originalMotd = fs.readFileSync(pristine(motdPath));
  expect(fs.existsSync(pristine(tunPath))).toBe(false);

  const preview = await stack.preview({ diff: true });
  expect(preview.changeSummary).toEqual({ create: 3 }); // the stack and two files
  expect(preview.stdout).toContain("/etc/modules-load.d/tun.conf");
  expect(fs.readFileSync(onHost(motdPath)).equals(originalMotd)).toBe(true);

  const loginsBefore = testHost.acceptedLogins();
  const up = await stack.up();
  expect(up.summary.result).toBe("succeeded");
  expect(fs.readFileSync(onHost(motdPath), "utf8")).toBe("Managed by vfio-host\n");
  expect(fs.readFileSync(onHost(tunPath), "utf8")).toBe("tun\n");
  // The original bytes were saved on the host before the first write.
  expect(fs.readFileSync(onHost("var/lib/vfio-host/backup/etc/motd")).equals(originalMotd)).toBe(true);
  const connectionsPerUp = testHost.acceptedLogins() - loginsBefore;
  console.log(`SSH connections opened by one pulumi up of the proof stack: ${connectionsPerUp}`);
  expect(connectionsPerUp).toBe(1);

  const again = await stack.up();
  expect(again.summary.resourceChanges).toEqual({ same: 3 });

  // Drift: someone edits the file by hand; refresh records it and the next up puts ours back.
  fs.writeFileSync(onHost(tunPath), "edited by hand\n");
  const refresh = await stack.refresh();
  expect(refresh.summary.resourceChanges).toMatchObject({ update: 1 });
  const repaired = await stack.up();
  expect(repaired.summary.resourceChanges).toMatchObject({ update: 1 });
  expect(fs.readFileSync(onHost(tunPath), "utf8")).toBe("tun\n");

  // The state, as the backend stores it and as `pulumi stack export` shows it, holds no key material.
  const stateFile = path.join(backendDir, ".pulumi/stacks/vfio-host-proof/proof.json");
  const keyLine = testHost.privateKey.split("\n")[2];
  for (const state of [fs.readFileSync(stateFile, "utf8"), pulumiCli(env, ["stack", "export", "-s", "proof"], { cwd: workDir })]) {
    expect(state).toContain("4dabf18193072939515e22adb298388d"); // Pulumi's marker of an encrypted secret
    expect(state).not.toContain("PRIVATE KEY");
    expect(state).not.toContain(keyLine);
  }

  const destroy = await stack.destroy();
  expect(destroy.summary.result).toBe("succeeded");
  expect(fs.readFileSync(onHost(motdPath)).equals(originalMotd)).toBe(true);
  expect(fs.existsSync(onHost(tunPath))).toBe(false);
  expect(fs.existsSync(onHost("var/lib/vfio-host/backup/etc/motd"))).toBe(false);
  await stack.workspace.removeStack("proof");
});

test("a wrong pinned host key fails the update before any command runs, showing both fingerprints", async () => {
  const wrongKey = "SHA256:" + "A".repeat(43);
  const stack = await stackFor("wrong-key", wrongKey);
  const motdBefore = fs.readFileSync(onHost(motdPath));
  const loginsBefore = testHost.acceptedLogins();
  const failure = await stack.up().then(
    () => undefined,
    (err: Error) => err,
  );
  expect(failure).toBeDefined();
  expect(failure!.message).toContain("host key mismatch");
  expect(failure!.message).toContain(wrongKey);
  expect(failure!.message).toMatch(/the host presented: [A-Z0-9]+ SHA256:[A-Za-z0-9+/]{43}/);
  expect(testHost.acceptedLogins()).toBe(loginsBefore);
  expect(fs.readFileSync(onHost(motdPath)).equals(motdBefore)).toBe(true);
  expect(fs.existsSync(onHost(tunPath))).toBe(false);
  await stack.workspace.removeStack("wrong-key", { force: true });
});

test("destroy keeps a file edited by hand after up, and its output says where the original is and how to put it back", async () => {
  const stack = await stackFor("hand-edit", testHost.hostKey);
  const originalMotd = fs.readFileSync(onHost(motdPath));
  expect((await stack.up()).summary.result).toBe("succeeded");
  fs.appendFileSync(onHost(motdPath), "edited by hand after up\n");

  const destroy = await stack.destroy();
  expect(destroy.summary.result).toBe("succeeded");
  expect(fs.readFileSync(onHost(motdPath), "utf8")).toBe("Managed by vfio-host\nedited by hand after up\n");
  expect(fs.readFileSync(onHost("var/lib/vfio-host/backup/etc/motd")).equals(originalMotd)).toBe(true);
  expect(destroy.stdout).toContain("/etc/motd NOT restored: it was changed after vfio-host wrote it, so destroy leaves it as it is.");
  expect(destroy.stdout).toContain("to put it back by hand: cp -p /var/lib/vfio-host/backup/etc/motd /etc/motd");
  // The file it created and nobody touched is gone as before.
  expect(fs.existsSync(onHost(tunPath))).toBe(false);
  await stack.workspace.removeStack("hand-edit");
});
