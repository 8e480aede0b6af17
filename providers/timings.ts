// Where a run spends its time, for `npm run bench`. With VFIO_HOST_TIMINGS naming a file, each
// process of a run (the program, the dynamic provider) appends one JSON line per step: its own
// start (performance.timeOrigin, when the process began), and each provider call with the SSH
// round trips and connections made inside it. Absolute times, so the bench lines up the processes
// with the CLI it started. Without the variable nothing is recorded and nothing is wrapped.
import { AsyncLocalStorage } from "node:async_hooks";
import { appendFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type * as pulumi from "@pulumi/pulumi";

export interface TimingLine {
  pid: number;
  /** "program" or "provider". */
  role: string;
  /** "process" (start to load), or the step: e.g. "KernelCmdline.check". */
  what: string;
  /** Epoch milliseconds. */
  start: number;
  end: number;
  /** A command's step (its own line: what = "command"), and its description. */
  step?: string;
  command?: string;
  /** Commands run over SSH inside the step (each is one round trip), and their total time. */
  roundTrips?: number;
  sshMs?: number;
  connections?: number;
  /** This process's CPU (user + system) when the line was written, in milliseconds. */
  cpuMs?: number;
}

const file = process.env.VFIO_HOST_TIMINGS;
const now = () => performance.timeOrigin + performance.now();

function write(line: Omit<TimingLine, "pid" | "cpuMs">): void {
  if (!file) return;
  const cpu = process.cpuUsage();
  appendFileSync(file, `${JSON.stringify({ pid: process.pid, ...line, cpuMs: Math.round((cpu.user + cpu.system) / 1000) })}\n`);
}

/**
 * Records this process's start, up to the moment the caller has loaded what it needs, and its exit
 * with the CPU it used (a provider the engine kills has no exit line: its last step's CPU counts).
 */
export function recordProcessStart(role: string): void {
  write({ role, what: "process", start: performance.timeOrigin, end: now() });
  if (file) process.once("exit", () => write({ role, what: "exit", start: now(), end: now() }));
}

/** Records a step of the program (e.g. its resources declared): from the process's start to now. */
export function recordProgramStep(what: string): void {
  write({ role: "program", what, start: performance.timeOrigin, end: now() });
}

interface SshCounts {
  step: string;
  roundTrips: number;
  sshMs: number;
  connections: number;
}
const current = new AsyncLocalStorage<SshCounts>();

/** Counts one SSH round trip (a command, from `start` to its exit) towards the step running it, and records the command. */
export function countRoundTrip(start: number, command: string): void {
  const counts = current.getStore();
  if (!counts) return;
  const end = now();
  counts.roundTrips++;
  counts.sshMs += end - start;
  write({ role: "provider", what: "command", step: counts.step, command: command.slice(0, 120), start, end });
}

/** Counts a new SSH connection (handshake and authentication, from `start`) towards the step that needed it. */
export function countConnection(start: number): void {
  const counts = current.getStore();
  if (counts) {
    counts.connections++;
    counts.sshMs += now() - start;
  }
}

/** The clock the counts use: epoch milliseconds. */
export const timingClock = now;

const METHODS = ["check", "diff", "create", "read", "update", "delete"] as const;

/** The provider, each method recorded as `<kind>.<method>` when timings are on; as it is otherwise. */
export function timedProvider(kind: string, provider: pulumi.dynamic.ResourceProvider): pulumi.dynamic.ResourceProvider {
  if (!file) return provider;
  const timed: Record<string, unknown> = {};
  for (const method of METHODS) {
    const fn = provider[method] as ((...args: unknown[]) => Promise<unknown>) | undefined;
    if (!fn) continue;
    timed[method] = async (...args: unknown[]) => {
      const counts: SshCounts = { step: `${kind}.${method}`, roundTrips: 0, sshMs: 0, connections: 0 };
      const start = now();
      try {
        return await current.run(counts, () => fn.apply(provider, args));
      } finally {
        const { step, ...figures } = counts;
        write({ role: "provider", what: step, start, end: now(), ...figures, sshMs: Math.round(figures.sshMs) });
      }
    };
  }
  return timed as unknown as pulumi.dynamic.ResourceProvider;
}
