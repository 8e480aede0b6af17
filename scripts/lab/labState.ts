// The running lab as tests see it: its connection facts, as `lab.sh up` writes them (and `down`
// removes them), and the lock that lets one test file at a time reset and reboot it.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";
import { z } from "zod";

/** The boot stacks `lab.sh --flavor` builds (see lab.sh); grub is the default. */
export const labFlavors = ["grub", "sdboot-dracut", "extlinux"] as const;
export type LabFlavor = (typeof labFlavors)[number];

export const LabStateSchema = z.object({
  host: z.string(),
  port: z.number().int().min(1).max(65535),
  user: z.string(),
  privateKeyPath: z.string(),
  /** The guest's OpenSSH public key line (made at image build), to pin. */
  hostKey: z.string().regex(/^ssh-ed25519 [A-Za-z0-9+/]+={0,2}$/),
  pid: z.number().int().positive(),
  accel: z.enum(["kvm", "tcg"]),
  /** Absent in a lab.json written before flavours, which was always a grub lab. */
  flavor: z.enum(labFlavors).default("grub"),
  overlay: z.string(),
  image: z.string(),
  serialLog: z.string(),
  bootSeconds: z.number(),
  startedAt: z.string(),
});
export type LabState = z.infer<typeof LabStateSchema>;

const cacheDir = (env: NodeJS.ProcessEnv) => env.VFIO_HOST_CACHE || path.join(homedir(), ".cache", "vfio-host");

/** LAB_FLAVOR as lab.sh reads it; lab.sh itself refuses a name it does not know. */
export function labFlavor(env: NodeJS.ProcessEnv = process.env): LabFlavor {
  const flavor = env.LAB_FLAVOR || "grub";
  if (!(labFlavors as readonly string[]).includes(flavor)) {
    throw new Error(`LAB_FLAVOR=${flavor}: no such lab flavour; use one of: ${labFlavors.join(" ")}`);
  }
  return flavor as LabFlavor;
}

/** A state directory's name for FLAVOR: grub's keeps the name it had before flavours. */
const flavorDir = (name: string, flavor: LabFlavor) => (flavor === "grub" ? name : `${name}-${flavor}`);

export function labStatePath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.LAB_STATE || path.join(cacheDir(env), flavorDir("lab-state", labFlavor(env))), "lab.json");
}

/**
 * The environment of a lab instance of a test suite's own (key, overlay, port, lock) over the
 * cached image of FLAVOR (by default the one LAB_FLAVOR names), so suites never reset each other's VM or the
 * user's `lab`. Pass it explicitly to child processes: under jest, process.env is a copy that
 * children do not inherit.
 */
export function labInstanceEnv(name: string, flavor: LabFlavor = labFlavor(process.env)): NodeJS.ProcessEnv {
  return { ...process.env, LAB_FLAVOR: flavor, LAB_STATE: path.join(cacheDir(process.env), flavorDir(`lab-${name}`, flavor)) };
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
 * resetting each other's VM. Resolves to the function that releases it.
 */
export function lockLab(stateFile = labStatePath()): Promise<() => void> {
  return holdFileLock(path.join(path.dirname(stateFile), "test.lock"));
}

/**
 * Waits for an exclusive lock on `lockFile` and holds it: `flock` keeps it until the pipe to `cat`
 * closes, which also happens when this process dies. Resolves to the function that releases it.
 */
export function holdFileLock(lockFile: string): Promise<() => void> {
  mkdirSync(path.dirname(lockFile), { recursive: true });
  const holder = spawn("flock", ["--exclusive", lockFile, "sh", "-c", "echo locked; exec cat"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    holder.stdout.once("data", () => resolve(() => holder.stdin.end()));
    holder.once("exit", (code) => reject(new Error(`flock ${lockFile} exited with ${code}`)));
  });
}
