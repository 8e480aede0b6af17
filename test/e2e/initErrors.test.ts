// The engine behaviour HostReboot relies on to remember a failed boot verification, checked on the
// real CLI with a tiny local program: a dynamic provider's create/update that throws an error with
// `id`, `properties` and `reasons` has those properties recorded as the resource's outputs (secret
// outputs still secret) and the resource marked with init errors; the next `up` then calls update
// even though nothing changed (pkg/resource/deploy/step_generator.go: "If resource was unchanged,
// but there were initialization errors, generate an empty update step"), and a successful update
// clears the mark. And how the project's own program (stacks/index.ts) reports a bad stack config
// through the same CLI: one line per problem, no JavaScript stack.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { localStack, projectRoot, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(300_000);

const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const fs = require("fs");
const calls = process.env.INIT_ERRORS_CALLS;
const provider = {
  async diff(id, olds, news) { return { changes: olds.mode !== news.mode }; },
  async create(inputs) { return step("create", "probe", undefined, inputs); },
  async update(id, olds, news) { return step("update", id, olds, news); },
  async delete() {},
};
async function step(kind, id, olds, news) {
  fs.appendFileSync(news.calls, JSON.stringify({ kind, failedBefore: (olds && olds.failedVerification) || null }) + "\\n");
  if (news.mode === "fail") {
    const err = new Error("the boot failed verification");
    err.id = id;
    err.properties = { ...news, failedVerification: { bootId: "boot-" + Date.now() } };
    err.reasons = ["the boot failed verification"];
    throw err;
  }
  return kind === "create" ? { id, outs: news } : { outs: news };
}
const mode = new pulumi.Config().require("mode");
new pulumi.dynamic.Resource(provider, "probe", { mode, calls, connection: pulumi.secret("SECRET-" + "CONNECTION") }, { additionalSecretOutputs: ["connection"] });
`;

let workDir: string;
let backendDir: string;

beforeAll(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-initerrors-"));
  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-initerrors-state-"));
  fs.writeFileSync(path.join(workDir, "Pulumi.yaml"), "name: initerrors\nruntime: nodejs\nmain: index.js\n");
  fs.writeFileSync(path.join(workDir, "index.js"), PROGRAM);
  fs.symlinkSync(path.join(projectRoot, "node_modules"), path.join(workDir, "node_modules"));
});

afterAll(() => {
  fs.rmSync(workDir, { recursive: true, force: true });
  fs.rmSync(backendDir, { recursive: true, force: true });
});

test("a failed create is recorded with its outputs and init errors, and the next up calls update without a change", async () => {
  const callsFile = path.join(workDir, "calls.jsonl");
  const env = { ...pulumiEnv(backendDir), INIT_ERRORS_CALLS: callsFile };
  const stack = await localStack(workDir, "probe", env);
  const calls = () => fs.readFileSync(callsFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { kind: string; failedBefore: unknown });
  const probe = async () => {
    const state = (await stack.exportStack()).deployment as { resources: { type: string; outputs?: Record<string, unknown>; initErrors?: string[] }[] };
    return state.resources.find((r) => r.type === "pulumi-nodejs:dynamic:Resource")!;
  };

  await stack.setConfig("mode", { value: "fail" });
  await expect(stack.up()).rejects.toThrow(/the boot failed verification/);
  const recorded = await probe();
  expect(recorded.initErrors).toEqual(["the boot failed verification"]);
  expect(recorded.outputs).toMatchObject({ mode: "fail", failedVerification: { bootId: expect.stringMatching(/^boot-/) } });
  // exportStack shows secrets decrypted, marked with the secret signature; the backend's file holds ciphertext.
  expect(recorded.outputs!.connection).toMatchObject({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" });
  expect(fs.readFileSync(path.join(backendDir, ".pulumi/stacks/initerrors/probe.json"), "utf8")).not.toContain("SECRET-CONNECTION");

  // Same inputs, diff says no change: the engine still calls update, with the recorded outputs as olds.
  await expect(stack.up()).rejects.toThrow(/the boot failed verification/);
  expect(calls().map((c) => c.kind)).toEqual(["create", "update"]);
  expect(calls()[1].failedBefore).toEqual((recorded.outputs as { failedVerification: unknown }).failedVerification);

  await stack.setConfig("mode", { value: "ok" });
  const fixed = await stack.up();
  expect(fixed.summary.result).toBe("succeeded");
  expect((await probe()).initErrors ?? []).toEqual([]);
  const again = await stack.up();
  expect(again.summary.resourceChanges).toEqual({ same: 2 });
  expect(calls().map((c) => c.kind)).toEqual(["create", "update", "update"]);
  await stack.destroy();
});

test("the project's program reports a bad stack config one line per problem, naming each key, with no stack trace and no secret", async () => {
  // The program as `npm run pulumi` runs it (compiled, dist/stacks/index.js), from a project of its own
  // so that this stack's config stays out of stacks/.
  const programDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-config-errors-"));
  try {
    const main = path.relative(programDir, path.join(projectRoot, "dist/stacks/index.js"));
    fs.writeFileSync(path.join(programDir, "Pulumi.yaml"), `name: vfio-host-config-errors\nruntime:\n  name: nodejs\n  options:\n    typescript: false\nmain: ${main}\n`);
    fs.symlinkSync(path.join(projectRoot, "node_modules"), path.join(programDir, "node_modules"));
    const stack = await localStack(programDir, "config-errors", pulumiEnv(backendDir));
    await stack.setAllConfig({
      "vfio-host:host": { value: "192.0.2.10" },
      "vfio-host:port": { value: "ssh" },
      "vfio-host:insecureTrustOnFirstUse": { value: "true" },
      "vfio-host:sshPrivateKey": { value: "SECRET-KEY-BYTES" },
      "vfio-host:kernelArgs": { value: JSON.stringify(["intel_iommu=on", "iommu=pt\nquiet"]) },
      "vfio-host:vfio": { value: JSON.stringify({ devices: ["8086:3a67"] }) },
      "vfio-host:libvirt": { value: JSON.stringify({ domains: { homeassistant: { name: "homeassistant", vcpus: 2, memoryMiB: "lots" } } }) },
    });
    const output = await stack.preview().then(
      () => "",
      (error: Error) => error.message,
    );
    expect(output).toContain("The stack config has 4 problems:");
    expect(output).toContain("vfio-host:sshPrivateKey is stored in plain text; set it again with `pulumi config set --secret sshPrivateKey ...`");
    expect(output).toContain('vfio-host:port = "ssh": must be a port number from 1 to 65535, e.g. 22');
    expect(output).toContain('vfio-host:kernelArgs[1]: "iommu=pt\\nquiet" contains "\\n", which grub-mkconfig copies unquoted into grub.cfg');
    expect(output).toContain('vfio-host:libvirt.domains.homeassistant.memoryMiB: "lots" is not a whole number of MiB');
    expect(output).not.toContain("SECRET-KEY-BYTES");
    expect(output).not.toMatch(/unhandled exception|\bat Object\.|\bat \S+ \(|\.(ts|js):\d+/);
  } finally {
    fs.rmSync(programDir, { recursive: true, force: true });
  }
});
