// The compiled fleet command run as `npm run fleet` runs it after its build, and what the tests read
// from its output: the summary table, and the order of the status lines.
import { ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { projectRoot } from "./pulumiEnv";

const fleetJs = path.join(projectRoot, "dist/scripts/fleet.js");

export interface FleetResult {
  code: number | null;
  output: string;
  wallMs: number;
  /** User + system CPU seconds of the fleet and every process below it that was waited for (bash's `times`). */
  cpuSeconds: number;
}

export interface FleetRun {
  child: ChildProcess;
  done: Promise<FleetResult>;
}

/**
 * Starts the fleet under a bash that prints `times` on fd 3 when node exits: the CPU of node, the
 * CLIs and every plugin below them (node's own resourceUsage does not count children). `onLine`
 * hears each line of its output as it comes.
 */
export function startFleet(args: readonly string[], env: NodeJS.ProcessEnv, onLine?: (line: string) => void): FleetRun {
  const started = Date.now();
  const child = spawn("bash", ["-c", 'node "$@"; code=$?; times >&3; exit $code', "fleet", fleetJs, ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe", "pipe"],
  });
  let output = "";
  let times = "";
  let heard = 0;
  const take = (d: Buffer) => {
    output += d.toString();
    const end = output.lastIndexOf("\n") + 1;
    if (onLine && end > heard) output.slice(heard, end - 1).split("\n").forEach(onLine);
    heard = Math.max(heard, end);
  };
  child.stdout!.on("data", take);
  child.stderr!.on("data", take);
  (child.stdio[3] as NodeJS.ReadableStream).on("data", (d: Buffer) => (times += d.toString()));
  const done = new Promise<FleetResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      // `times`: the shell's own user and system time, then its children's: "0m9.180s 0m3.420s".
      const children = times.trim().split("\n")[1] ?? "";
      const seconds = [...children.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, m) => sum + Number(m[1]) * 60 + Number(m[2]), 0);
      resolve({ code, output, wallMs: Date.now() - started, cpuSeconds: seconds });
    });
  });
  return { child, done };
}

export interface SummaryRow {
  host: string;
  result: string;
  changes: string;
  reboot: string;
}

/** The summary table's rows by stack, parsed from the fleet's output. */
export function summaryRows(output: string): Map<string, SummaryRow> {
  const lines = output.split("\n");
  const header = lines.findIndex((line) => /^STACK\s+HOST\s+RESULT\s+CHANGES\s+REBOOT\s+DURATION$/.test(line));
  const rows = new Map<string, SummaryRow>();
  if (header < 0) return rows;
  for (const line of lines.slice(header + 1)) {
    const match = /^(\S+)\s+(\S+)\s+(ok|failed|not run)\s+(\+\d+ ~\d+ -\d+(?: \+-\d+)?|-)\s+(yes|no)\s+[\d.]+s$/.exec(line);
    if (!match) break;
    rows.set(match[1], { host: match[2], result: match[3], changes: match[4], reboot: match[5] });
  }
  return rows;
}

/** A status line of the fleet ("host-01 (10.0.0.5): previewing"): the stack and its new state. */
export function parseStatusLine(line: string): { stack: string; state: string } | undefined {
  const match = /^(\S+)(?: \([^)]*\))?: (.+)$/.exec(line);
  return match ? { stack: match[1], state: match[2] } : undefined;
}

/** The most stacks that were in `state` at once, from the status lines in the order printed. */
export function mostAtOnce(output: string, state: string): number {
  const inState = new Set<string>();
  let most = 0;
  for (const line of output.split("\n")) {
    const status = parseStatusLine(line);
    if (!status) continue;
    if (status.state === state) most = Math.max(most, inState.add(status.stack).size);
    else inState.delete(status.stack);
  }
  return most;
}
