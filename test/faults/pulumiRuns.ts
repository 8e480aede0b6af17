// The fault suites' side of the Pulumi CLI: the real `pulumi` binary, spawned in a process group of
// its own so a trial can SIGKILL the CLI, its language host and the provider plugin at once (a
// laptop losing power), and the Alpine-shaped test host with its boot files, compared byte for byte.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { projectRoot } from "../e2e/pulumiEnv";
import { readInitramfs } from "../standins/initramfsImage";
import type { TestHost } from "../testhost/testHost";
import { killTree } from "./processes";

/** The project's own program (stacks/index.ts, compiled to dist/) run from a directory of its own, so the suites' stack files stay out of stacks/. */
export const faultsWorkDir = path.join(projectRoot, "test/faults/fixtures/alpine");

export interface CliResult {
  /** Exit status, or null when killed. */
  code: number | null;
  /** stdout and stderr, interleaved as they came. */
  output: string;
  ms: number;
  /** When the run started (Date.now()), to line up the chunks of runs that ran side by side. */
  startedAt: number;
  /** When each chunk of output came, in ms since the start: where in a run a step happens. */
  chunks: Array<{ ms: number; text: string }>;
}

export interface CliRun {
  /** Everything printed so far. */
  output(): string;
  readonly done: Promise<CliResult>;
  /**
   * SIGKILL to the CLI and every process below it: what a laptop losing power does. The CLI starts
   * each plugin (language host, provider) in a process group of its own, so killing the CLI's group
   * alone leaves the provider running, holding its SSH connection and the host lock.
   */
  killGroup(): void;
}

export interface CliOptions {
  /** The project directory (default faultsWorkDir). */
  cwd?: string;
}

export function startCli(env: Record<string, string>, args: string[], options: CliOptions = {}): CliRun {
  const start = Date.now();
  const child = spawn("pulumi", args, { cwd: options.cwd ?? faultsWorkDir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const chunks: CliResult["chunks"] = [];
  const collect = (d: Buffer) => {
    output += d.toString("utf8");
    chunks.push({ ms: Date.now() - start, text: d.toString("utf8") });
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output, ms: Date.now() - start, startedAt: start, chunks }));
  });
  return {
    output: () => output,
    done,
    killGroup: () => killTree(child.pid!),
  };
}

/** Fails with the run's own output when it did not exit 0, so a failed run says why in the test's report. */
export function expectSucceeded(result: CliResult, what: string): void {
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}:\n${result.output}`);
}

export const cli = (env: Record<string, string>, args: string[], options: CliOptions = {}) => startCli(env, args, options).done;

/**
 * What a user does after a killed run, driven by what the CLI says. The file backend keeps the dead
 * run's lock: "the stack is currently locked ... delete the lock file with `pulumi cancel`", so
 * `pulumi cancel`, then the command again. That run goes on past the creates the dead run left
 * pending ("Attempting to deploy or update resources with N pending operations from previous
 * deployment ... repair your stack using `pulumi refresh` ... run interactively to clear pending
 * CREATE operations") and keeps them in the state, where they pile up run after run: so `pulumi
 * refresh --clear-pending-creates`, its non-interactive form. Each step taken is appended to `steps`.
 */
export async function withRecovery(env: Record<string, string>, stack: string, args: string[], steps: string[], options: CliOptions = {}): Promise<CliResult> {
  for (let attempt = 0; ; attempt++) {
    const result = await cli(env, args, options);
    const pending = /with (\d+) pending operations? from previous deployment/.exec(result.output);
    if (result.code === 0 && pending) {
      steps.push(`${args[0]} went past ${pending[1]} pending, pulumi refresh --clear-pending-creates`);
      const refresh = await cli(env, ["refresh", "--yes", "--skip-preview", "--non-interactive", "--clear-pending-creates", "--stack", stack], options);
      if (refresh.code !== 0) throw new Error(`pulumi refresh --clear-pending-creates failed:\n${refresh.output}`);
    }
    if (result.code === 0 || attempt === 3 || !/currently locked/.test(result.output)) return result;
    steps.push("pulumi cancel");
    const cancel = await cli(env, ["cancel", "--yes", "--stack", stack], options);
    if (cancel.code !== 0) throw new Error(`pulumi cancel failed:\n${cancel.output}`);
  }
}

/**
 * The files the boot-file resources (KernelCmdline, VfioBinding, InitramfsModules) write or make
 * the tools rebuild on the Alpine host. The initramfs is compared by what it holds: cpio headers
 * carry mtimes, so no two mkinitfs runs write the same bytes.
 */
export const bootFilePaths = [
  "etc/update-extlinux.conf",
  "boot/extlinux.conf",
  "etc/modprobe.d/vfio.conf",
  "etc/mkinitfs/mkinitfs.conf",
  "etc/mkinitfs/features.d/vfio.modules",
  "boot/initramfs-lts",
] as const;

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** Each boot file's content as a comparable string ("absent" when missing). */
export function readBootFiles(testHost: TestHost): Record<string, string> {
  return Object.fromEntries(
    bootFilePaths.map((rel) => {
      const file = path.join(testHost.rootfs, rel);
      if (!fs.existsSync(file)) return [rel, "absent"];
      const data = fs.readFileSync(file);
      if (rel !== "boot/initramfs-lts") return [rel, data.toString("utf8")];
      return [rel, readInitramfs(data).map((m) => `${m.name} ${m.mode.toString(8)} ${sha256(m.data)}`).join("\n")];
    }),
  );
}

/** The boot files whose content differs from `expected`. */
export function differingBootFiles(testHost: TestHost, expected: Record<string, string>): string[] {
  return differing(readBootFiles(testHost), expected);
}

const differing = (now: Record<string, string>, expected: Record<string, string>) => bootFilePaths.filter((rel) => now[rel] !== expected[rel]);

/** How each differing boot file differs from `expected`, as `diff -u` prints it: what a failed comparison shows. */
export function bootFileDiffs(testHost: TestHost, expected: Record<string, string>): string {
  const now = readBootFiles(testHost);
  return differing(now, expected)
    .map((rel) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-diff-"));
      try {
        fs.writeFileSync(path.join(dir, "expected"), expected[rel]);
        fs.writeFileSync(path.join(dir, "found"), now[rel]);
        const diff = spawnSync("diff", ["-u", "--label", `${rel} expected`, "--label", `${rel} found`, "expected", "found"], { cwd: dir, encoding: "utf8" });
        return diff.stdout;
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    })
    .join("");
}

/** Puts the boot files back as `snapshot` has them (from this machine, not through the code under test) and drops the backups. */
export function resetBootFiles(testHost: TestHost, snapshot: Record<string, Buffer | undefined>): void {
  for (const [rel, data] of Object.entries(snapshot)) {
    const file = path.join(testHost.rootfs, rel);
    if (data === undefined) fs.rmSync(file, { force: true });
    else fs.writeFileSync(file, data);
  }
  fs.rmSync(path.join(testHost.rootfs, "var/lib/vfio-host/backup"), { recursive: true, force: true });
}

/** The boot files' raw bytes, for resetBootFiles. */
export function snapshotBootFiles(testHost: TestHost): Record<string, Buffer | undefined> {
  return Object.fromEntries(
    bootFilePaths.map((rel) => {
      const file = path.join(testHost.rootfs, rel);
      return [rel, fs.existsSync(file) ? fs.readFileSync(file) : undefined];
    }),
  );
}
