// Resource types that name their kind (`pulumi-nodejs:dynamic/vfio-host:HostFile`), through the real
// CLI against the sshd test host: a stack written while every resource had the one untyped type
// keeps its resources on the first run of the new code (the alias renames them in the state),
// nothing is created, deleted or replaced, and the host is not written to.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Stack } from "@pulumi/pulumi/automation";
import { UNTYPED } from "../../providers/dynamic";
import { startTestHost, TestHost } from "../testhost/testHost";
import { localStack, projectRoot, pulumiCli, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(600_000);

const workDir = path.join(projectRoot, "test/e2e/fixtures/hostfile");
const HOST_FILE = "pulumi-nodejs:dynamic/vfio-host:HostFile";
const STACK_NAME = "types";

let testHost: TestHost;
let backendDir: string;
let env: Record<string, string>;

beforeAll(async () => {
  testHost = await startTestHost();
  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-e2e-types-"));
  env = pulumiEnv(backendDir);
});

afterAll(async () => {
  await testHost?.stop();
  fs.rmSync(backendDir, { recursive: true, force: true });
  // Left by a failed run: the stack's config, which the passing run removes with the stack.
  fs.rmSync(path.join(workDir, `Pulumi.${STACK_NAME}.yaml`), { force: true });
});

async function stackFor(name: string): Promise<Stack> {
  const stack = await localStack(workDir, name, env);
  await stack.setAllConfig({
    host: { value: testHost.host },
    port: { value: String(testHost.port) },
    user: { value: "root" },
    hostKey: { value: testHost.hostKey },
    sshPrivateKey: { value: testHost.privateKey, secret: true },
  });
  return stack;
}

interface Exported {
  deployment: { resources: { urn: string; type: string }[] };
}

/** `pulumi stack export` as the CLI prints it: the type and URN of every resource. */
const exported = () => (JSON.parse(pulumiCli(env, ["stack", "export", "-s", STACK_NAME], { cwd: workDir })) as Exported).deployment.resources;

const urnsOf = (type: string, resources: Exported["deployment"]["resources"]) =>
  resources
    .filter((r) => r.type === type)
    .map((r) => r.urn)
    .sort();

test("a stack from before the types named their kind keeps its resources: renamed in the state, nothing replaced", async () => {
  const stack = await stackFor(STACK_NAME);
  const preview = await stack.preview({ diff: true });
  expect(preview.stdout).toContain(`+ ${HOST_FILE}`);
  expect(preview.stdout).not.toContain(UNTYPED);
  console.log(`preview of a new stack:\n${preview.stdout}`);
  expect((await stack.up()).summary.result).toBe("succeeded");
  expect(exported().map((r) => r.type).sort()).toEqual([HOST_FILE, HOST_FILE, "pulumi:providers:pulumi-nodejs", "pulumi:pulumi:Stack"]);

  // The state as the code before wrote it: dynamic.Resource without module or type name gave every
  // resource the type pulumi-nodejs:dynamic:Resource, in its `type` and in its URN.
  const { deployment, version } = await stack.exportStack();
  const before = JSON.stringify(deployment).replaceAll(HOST_FILE, UNTYPED);
  await stack.importStack({ version, deployment: JSON.parse(before) });
  expect(urnsOf(UNTYPED, exported())).toEqual([
    `urn:pulumi:${STACK_NAME}::vfio-host-proof::${UNTYPED}::motd`,
    `urn:pulumi:${STACK_NAME}::vfio-host-proof::${UNTYPED}::tun-module`,
  ]);

  const motd = fs.readFileSync(path.join(testHost.rootfs, "etc/motd"));
  const upperBefore = fs.readdirSync(testHost.upperDir, { recursive: true }).sort();
  const renamed = await stack.preview({ diff: true });
  console.log(`preview of the stack from before:\n${renamed.stdout}`);
  expect(renamed.changeSummary).toEqual({ same: 3 });
  const up = await stack.up({ diff: true });
  expect(up.summary.resourceChanges).toEqual({ same: 3 });

  const after = exported();
  expect(after.map((r) => r.type).sort()).toEqual([HOST_FILE, HOST_FILE, "pulumi:providers:pulumi-nodejs", "pulumi:pulumi:Stack"]);
  expect(urnsOf(HOST_FILE, after)).toEqual([
    `urn:pulumi:${STACK_NAME}::vfio-host-proof::${HOST_FILE}::motd`,
    `urn:pulumi:${STACK_NAME}::vfio-host-proof::${HOST_FILE}::tun-module`,
  ]);
  expect(JSON.stringify(after)).not.toContain(UNTYPED);
  // Nothing was written on the host: same bytes, no file changed since.
  expect(fs.readFileSync(path.join(testHost.rootfs, "etc/motd")).equals(motd)).toBe(true);
  expect(fs.readdirSync(testHost.upperDir, { recursive: true }).sort()).toEqual(upperBefore);

  expect((await stack.destroy()).summary.result).toBe("succeeded");
  await stack.workspace.removeStack(STACK_NAME);
});
