// The fleet command's line (scripts/fleet.ts) and the stacks it picks (scripts/fleet/stackRun.ts).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { displayBackend, parseFleetArgs } from "../../../scripts/fleet";
import { fleetStacks } from "../../../scripts/fleet/stackRun";
import { projectRoot } from "../../../scripts/pulumiEnv";

describe("parseFleetArgs", () => {
  it("reads the operation, the limits, the project directory and the stacks", () => {
    expect(parseFleetArgs(["up", "--parallel", "4", "--max-rebooting", "2", "--cwd", "fixtures/fleet", "nas", "desk"], "/home/me")).toEqual({
      operation: "up",
      limits: { parallel: 4, maxRebooting: 2 },
      cwd: "/home/me/fixtures/fleet",
      stacks: ["nas", "desk"],
    });
  });

  it("defaults to the cores, one reboot at a time, this checkout, every stack", () => {
    expect(parseFleetArgs(["preview"], "/home/me")).toEqual({ operation: "preview", limits: { parallel: os.availableParallelism(), maxRebooting: 1 }, cwd: projectRoot, stacks: [] });
  });

  it("says what it takes when the operation is missing or unknown, and names a bad limit's flag", () => {
    expect(() => parseFleetArgs([], "/")).toThrow("say what to run: preview, up, refresh, destroy (got nothing)");
    expect(() => parseFleetArgs(["apply"], "/")).toThrow('say what to run: preview, up, refresh, destroy (got "apply")');
    expect(() => parseFleetArgs(["up", "--max-rebooting", "0"], "/")).toThrow('--max-rebooting "0" is not a whole number of at least 1');
    expect(() => parseFleetArgs(["up", "--paralel", "2"], "/")).toThrow("Unknown option '--paralel'");
  });
});

describe("displayBackend", () => {
  it("masks a URL's password and leaves the rest", () => {
    expect(displayBackend("postgres://fleet:s3cret@db.example:5432/pulumi?sslmode=require")).toBe("postgres://fleet:****@db.example:5432/pulumi?sslmode=require");
    expect(displayBackend("file:///work/.pulumi-state?metadata=skip")).toBe("file:///work/.pulumi-state?metadata=skip");
  });
});

describe("fleetStacks", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "fleet-stacks-"));
    for (const file of ["Pulumi.yaml", "Pulumi.nas.yaml", "Pulumi.desk.yaml", "Pulumi.amd-grub.example.yaml", "notes.txt"]) fs.writeFileSync(path.join(dir, file), "");
  });
  afterEach(() => fs.rmSync(dir, { recursive: true }));

  it("is every stack file's stack by default, the *.example templates left out", () => {
    expect(fleetStacks(dir, [])).toEqual(["desk", "nas"]);
  });

  it("is the stacks named, once each, each with its file", () => {
    expect(fleetStacks(dir, ["nas", "amd-grub.example", "nas"])).toEqual(["nas", "amd-grub.example"]);
    expect(() => fleetStacks(dir, ["nas", "garage"])).toThrow(`no stack file Pulumi.garage.yaml in ${dir}: the fleet runs the stacks whose files are there (amd-grub.example, desk, nas)`);
  });
});
