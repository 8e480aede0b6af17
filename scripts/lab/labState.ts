// The running lab as tests see it: its connection facts, as `lab.sh up` writes them (and `down`
// removes them), and the lock that lets one test file at a time reset and reboot it.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";
import { z } from "zod";

export const LabStateSchema = z.object({
  host: z.string(),
  port: z.number().int().min(1).max(65535),
  user: z.string(),
  privateKeyPath: z.string(),
  /** The guest's OpenSSH public key line (made at image build), to pin. */
  hostKey: z.string().regex(/^ssh-ed25519 [A-Za-z0-9+/]+={0,2}$/),
  pid: z.number().int().positive(),
  accel: z.enum(["kvm", "tcg"]),
  overlay: z.string(),
  image: z.string(),
  serialLog: z.string(),
  bootSeconds: z.number(),
  startedAt: z.string(),
});
export type LabState = z.infer<typeof LabStateSchema>;

const cacheDir = (env: NodeJS.ProcessEnv) => env.VFIO_HOST_CACHE || path.join(homedir(), ".cache", "vfio-host");

export function labStatePath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.LAB_STATE || path.join(cacheDir(env), "lab-state"), "lab.json");
}

/**
 * The environment of a lab instance of a test suite's own (key, overlay, port, lock) over the
 * cached image, so suites never reset each other's VM or the user's `lab`. Pass it explicitly to
 * child processes: under jest, process.env is a copy that children do not inherit.
 */
export function labInstanceEnv(name: string): NodeJS.ProcessEnv {
  return { ...process.env, LAB_STATE: path.join(cacheDir(process.env), `lab-${name}`) };
}

export function readLabState(file = labStatePath()): LabState {
  if (!existsSync(file)) {
    throw new Error(`${file} does not exist: the lab is not running, start it with \`npm run lab -- up\``);
  }
  return LabStateSchema.parse(JSON.parse(readFileSync(file, "utf8")));
}

/**
 * There is one lab per cache, and every jest run on this machine may want it: a test file that
 * resets or reboots the lab holds this lock from start to end, so two runs take turns instead of
 * resetting each other's VM. `flock` keeps it until the pipe to `cat` closes, which also happens
 * when the test process dies. Resolves to the function that releases it.
 */
export function lockLab(stateFile = labStatePath()): Promise<() => void> {
  const lockFile = path.join(path.dirname(stateFile), "test.lock");
  mkdirSync(path.dirname(lockFile), { recursive: true });
  const holder = spawn("flock", ["--exclusive", lockFile, "sh", "-c", "echo locked; exec cat"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    holder.stdout.once("data", () => resolve(() => holder.stdin.end()));
    holder.once("exit", (code) => reject(new Error(`flock ${lockFile} exited with ${code}`)));
  });
}
