// The project's file backend survives a run killed while it writes state. go-cloud's file driver
// truncates a ".attrs" sidecar in place beside each state file; a `kill -9` at that moment left it
// empty, and every later run of the stack failed with "failed to load checkpoint: EOF" (the fault
// suite's kill trials hit it). scripts/pulumi-env.sh opens the backend with metadata=skip, so no
// sidecar is written, and drops empty sidecars an older setup left.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { projectRoot, pulumiCli, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(120_000);

let workDir: string;
let backendDir: string;

beforeAll(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-backend-"));
  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-backend-state-"));
  fs.writeFileSync(path.join(workDir, "Pulumi.yaml"), "name: backend\nruntime: nodejs\nmain: index.js\n");
  fs.writeFileSync(path.join(workDir, "index.js"), 'exports.answer = 42;\n');
  fs.symlinkSync(path.join(projectRoot, "node_modules"), path.join(workDir, "node_modules"));
});

afterAll(() => {
  fs.rmSync(workDir, { recursive: true, force: true });
  fs.rmSync(backendDir, { recursive: true, force: true });
});

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => fs.statSync(path.join(dir, f)).isFile());
}

test("state is written without sidecars, and an empty sidecar from an older setup no longer breaks the stack", () => {
  const env = pulumiEnv(backendDir);
  expect(env.PULUMI_BACKEND_URL).toBe(`file://${backendDir}?metadata=skip`);
  pulumiCli(env, ["stack", "init", "dev"], { cwd: workDir });
  pulumiCli(env, ["up", "--yes", "--skip-preview", "--stack", "dev"], { cwd: workDir });
  const files = filesUnder(backendDir);
  expect(files).toContain(".pulumi/stacks/backend/dev.json");
  expect(files.filter((f) => f.endsWith(".attrs"))).toEqual([]);

  // What a killed run of the old setup left: the stack is unreadable until the sidecar goes.
  const sidecar = path.join(backendDir, ".pulumi/stacks/backend/dev.json.attrs");
  fs.writeFileSync(sidecar, "");
  const broken = spawnSync("pulumi", ["stack", "output", "answer", "--stack", "dev"], { cwd: workDir, env: { ...process.env, ...env }, encoding: "utf8" });
  expect(broken.status).not.toBe(0);
  expect(broken.stderr).toMatch(/EOF/);
  const repaired = pulumiEnv(backendDir);
  expect(fs.existsSync(sidecar)).toBe(false);
  expect(pulumiCli(repaired, ["stack", "output", "answer", "--stack", "dev"], { cwd: workDir }).trim()).toBe("42");
});
