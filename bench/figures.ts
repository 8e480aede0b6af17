// The bench's arithmetic and tables, pure: samples into median/min/max, runs side by side into a
// markdown table with ratios, and a run's timing lines into where its time went.
import type { TimingLine } from "../providers/timings";

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) throw new Error("no samples");
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length };
}

/** One measured run of a command: wall and CPU seconds, and the SSH logins the host's sshd saw. */
export interface RunFigures {
  wallS: number;
  cpuS: number;
  sshLogins: number;
}

/** What is compared: the project's run and Ansible's equivalent, with the target ratio when there is one. */
export interface Comparison {
  job: string;
  project: { command: string; runs: RunFigures[] };
  ansible: { command: string; runs: RunFigures[] };
  /** The wall-time ratio (project ÷ Ansible, medians) the issue sets as the goal, e.g. 0.15. */
  target?: number;
}

const s = (x: number) => x.toFixed(1);
const range = (m: Summary) => `${s(m.median)} (${s(m.min)}–${s(m.max)})`;

export function ratio(c: Comparison): number {
  return summarize(c.project.runs.map((r) => r.wallS)).median / summarize(c.ansible.runs.map((r) => r.wallS)).median;
}

export function comparisonTable(comparisons: readonly Comparison[]): string {
  const header = [
    "| job | project: command | wall s, median (min–max) | CPU s | SSH logins | Ansible: command | wall s, median (min–max) | CPU s | SSH logins | ratio (wall) | target |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  const rows = comparisons.map((c) => {
    const side = (runs: RunFigures[]) => {
      const wall = summarize(runs.map((r) => r.wallS));
      const logins = summarize(runs.map((r) => r.sshLogins)).median;
      return [range(wall), s(summarize(runs.map((r) => r.cpuS)).median), Number.isNaN(logins) ? "—" : String(logins)];
    };
    const r = ratio(c);
    const target = c.target === undefined ? "" : `≤ ${c.target} ${r <= c.target ? "met" : "NOT met"}`;
    return `| ${c.job} | \`${c.project.command}\` | ${side(c.project.runs).join(" | ")} | \`${c.ansible.command}\` | ${side(c.ansible.runs).join(" | ")} | ${r.toFixed(2)} | ${target} |`;
  });
  return [...header, ...rows].join("\n");
}

/** One line of a breakdown: a stage of a run, when it started (s after the CLI started) and how long it took. */
export interface BreakdownLine {
  stage: string;
  atS: number;
  seconds: number;
  roundTrips?: number;
  connections?: number;
  sshS?: number;
}

/**
 * Where one run's time went, from the timing lines its processes wrote and the CLI's start and end
 * (epoch ms): the CLI and language host until the program's process began, the program's own
 * start, the dynamic provider's start, each provider step (with its SSH round trips), and the rest:
 * the engine between steps, the state write and the CLI's exit.
 */
export function breakdown(lines: readonly TimingLine[], cliStart: number, cliEnd: number): BreakdownLine[] {
  const at = (t: number) => (t - cliStart) / 1000;
  const out: BreakdownLine[] = [];
  const program = lines.find((l) => l.role === "program" && l.what === "process");
  if (program) {
    out.push({ stage: "CLI and language host, until the program's process starts", atS: 0, seconds: at(program.start) });
    out.push({ stage: "program: Node, @pulumi/pulumi and the project's modules load", atS: at(program.start), seconds: (program.end - program.start) / 1000 });
    const declared = lines.find((l) => l.role === "program" && l.what === "declared");
    if (declared) out.push({ stage: "program: config read, resources declared", atS: at(program.end), seconds: (declared.end - program.end) / 1000 });
  }
  for (const provider of lines.filter((l) => l.role === "provider" && l.what === "process")) {
    out.push({ stage: "dynamic provider: process starts and loads", atS: at(provider.start), seconds: (provider.end - provider.start) / 1000 });
  }
  for (const step of lines.filter((l) => l.role === "provider" && !["process", "command", "exit"].includes(l.what))) {
    out.push({
      stage: step.what,
      atS: at(step.start),
      seconds: (step.end - step.start) / 1000,
      roundTrips: step.roundTrips,
      connections: step.connections,
      sshS: (step.sshMs ?? 0) / 1000,
    });
  }
  out.sort((a, b) => a.atS - b.atS);
  // Time covered by at least one stage; the rest of the wall time is the engine's and the CLI's.
  const intervals = out.map((l) => [l.atS, l.atS + l.seconds] as const).sort((a, b) => a[0] - b[0]);
  let covered = 0;
  let reach = 0;
  for (const [from, to] of intervals) {
    if (to > reach) {
      covered += to - Math.max(from, reach);
      reach = to;
    }
  }
  const wall = (cliEnd - cliStart) / 1000;
  out.push({ stage: "engine between steps, state write, CLI exit (the rest)", atS: wall, seconds: Math.max(0, wall - covered) });
  return out;
}

export function breakdownTable(lines: readonly BreakdownLine[]): string {
  const header = [
    "| stage | starts at s | seconds | SSH round trips | new SSH connections | SSH s (round trips added up; they run at once) |",
    "|---|---|---|---|---|---|",
  ];
  const opt = (x: number | undefined, f = (v: number) => String(v)) => (x === undefined ? "" : f(x));
  const rows = lines.map(
    (l) => `| ${l.stage} | ${l.atS.toFixed(2)} | ${l.seconds.toFixed(2)} | ${opt(l.roundTrips)} | ${opt(l.connections)} | ${opt(l.sshS, (v) => v.toFixed(2))} |`,
  );
  return [...header, ...rows].join("\n");
}

/**
 * Whose CPU a run spent, in seconds: the program's and each dynamic provider's (the most any of its
 * lines recorded: the exit line, or the last step of a provider the engine killed) and the rest of
 * the run's process tree (`cpuS`): the CLI, the language host and the commands they ran.
 */
export function cpuByProcess(lines: readonly TimingLine[], cpuS: number): Array<{ process: string; cpuS: number }> {
  const byPid = new Map<number, { role: string; cpuMs: number }>();
  for (const line of lines) {
    const seen = byPid.get(line.pid);
    byPid.set(line.pid, { role: line.role, cpuMs: Math.max(seen?.cpuMs ?? 0, line.cpuMs ?? 0) });
  }
  const named = [...byPid.values()].map(({ role, cpuMs }) => ({
    process: role === "program" ? "program (Node: @pulumi/pulumi, the project's modules, the resources declared)" : "dynamic provider (Node: @pulumi/pulumi, the providers, their SSH reads)",
    cpuS: cpuMs / 1000,
  }));
  const rest = cpuS - named.reduce((sum, p) => sum + p.cpuS, 0);
  return [...named, { process: "CLI (Go), language host, and what else they ran (the rest)", cpuS: rest }];
}

export function cpuTable(rows: ReadonlyArray<{ process: string; cpuS: number }>): string {
  return ["| process | CPU s |", "|---|---|", ...rows.map((r) => `| ${r.process} | ${r.cpuS.toFixed(2)} |`)].join("\n");
}
