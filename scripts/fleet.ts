// `npm run fleet -- preview|up|refresh|destroy [--parallel N] [--max-rebooting M] [--cwd DIR] [STACK...]`:
// one command over many host stacks, each run through the Automation API (the real CLI, with
// Pulumi's own stack locking on whatever backend PULUMI_BACKEND_URL names), N at a time. `up`
// previews every stack first, learns which ones would run their HostReboot, and then lets at most
// M of those run at once: the reboot waves. One stack's failure never stops the others; the exit
// status is 1 when any failed.
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { rebootReason, RunObservation } from "./fleet/events";
import { failureText, formatDuration, redrawBlock, StackReport, statusLine, summaryTable } from "./fleet/report";
import { Limits, parseLimit, runScheduled, ScheduledJob } from "./fleet/schedule";
import { fleetStacks, FleetProject, openProject, Operation, runOperation, StackRunError } from "./fleet/stackRun";
import { projectRoot, pulumiEnv } from "./pulumiEnv";

export const USAGE = `Usage: npm run fleet -- preview|up|refresh|destroy [--parallel N] [--max-rebooting M] [--cwd DIR] [STACK...]

Runs the command on every host stack (each Pulumi.<stack>.yaml of the project's stack directory but
the *.example ones), or on the STACKs named, through the Automation API.

  --parallel N        at most N stacks run at once (default: the number of CPU cores, ${os.availableParallelism()} here)
  --max-rebooting M   up: at most M stacks whose HostReboot runs at once, the reboot waves (default 1);
                      up previews every stack first to learn which ones reboot
  --cwd DIR           the Pulumi project directory (default: this checkout)

The state backend is PULUMI_BACKEND_URL when set (postgres://USER:PASS@HOST:PORT/DB, s3://BUCKET...,
shared by a team), else this checkout's file backend (.pulumi-state/).`;

const OPERATIONS: readonly Operation[] = ["preview", "up", "refresh", "destroy"];

export interface FleetArgs {
  operation: Operation;
  limits: Limits;
  cwd: string;
  stacks: string[];
}

export function parseFleetArgs(argv: readonly string[], baseDir: string): FleetArgs | "help" {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: { parallel: { type: "string" }, "max-rebooting": { type: "string" }, cwd: { type: "string" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) return "help";
  const [operation, ...stacks] = positionals;
  if (!OPERATIONS.includes(operation as Operation)) throw new Error(`say what to run: ${OPERATIONS.join(", ")} (got ${operation === undefined ? "nothing" : `"${operation}"`})`);
  return {
    operation: operation as Operation,
    limits: { parallel: parseLimit("--parallel", values.parallel, os.availableParallelism()), maxRebooting: parseLimit("--max-rebooting", values["max-rebooting"], 1) },
    cwd: values.cwd === undefined ? projectRoot : path.resolve(baseDir, values.cwd),
    stacks,
  };
}

/** The backend as it may be printed: a URL's password masked. */
export function displayBackend(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "****";
    return parsed.toString();
  } catch {
    return url;
  }
}

/**
 * The status lines: on a terminal, one block rewritten in place (at most every 100 ms) with each
 * stack's step in flight; elsewhere (CI, tests, a pipe), or when the block would not fit on the
 * screen (the cursor cannot go back above its top), one line each time a stack's state changes.
 */
class StatusBoard {
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly printed = new Map<string, string>();

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly reports: readonly StackReport[],
  ) {}

  private get live(): boolean {
    return this.out.isTTY === true && this.reports.length < (this.out.rows || 24) - 1;
  }

  changed(report: StackReport): void {
    if (this.live) {
      this.timer ??= setTimeout(() => this.draw(), 100);
    } else if (this.printed.get(report.stack) !== report.state) {
      this.printed.set(report.stack, report.state);
      this.out.write(`${statusLine({ ...report, step: undefined })}\n`);
    }
  }

  /** A line above the status block. */
  note(text: string): void {
    if (this.live && this.drawn > 0) {
      this.out.write(`\x1b[${this.drawn}F\x1b[J`);
      this.drawn = 0;
    }
    this.out.write(`${text}\n`);
    if (this.live) this.draw();
  }

  draw(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.live) return;
    // A terminal that reports no width (0) gets lines of 120.
    this.out.write(redrawBlock(this.reports.map(statusLine), this.drawn, this.out.columns || 120));
    this.drawn = this.reports.length;
  }
}

/** Drives each stack's runs, keeping its report and the board up to date. */
class Fleet {
  readonly reports: StackReport[];
  readonly board: StatusBoard;

  constructor(
    private readonly project: FleetProject,
    names: readonly string[],
    out: NodeJS.WriteStream,
  ) {
    this.reports = names.map((stack) => ({ stack, state: "queued", reboot: false, ms: 0 }));
    this.board = new StatusBoard(out, this.reports);
  }

  report(stack: string): StackReport {
    return this.reports.find((r) => r.stack === stack)!;
  }

  set(report: StackReport, change: Partial<StackReport>): void {
    Object.assign(report, change);
    this.board.changed(report);
  }

  /**
   * One run of the stack, its report kept up to date: resolves with its observation, or rejects
   * with the StackRunError it failed with (the stack then settled as failed). A run that is not the
   * stack's `last` (up's preview) leaves it "previewed" when it succeeds.
   */
  async run(stack: string, operation: Operation, last: boolean): Promise<RunObservation> {
    const report = this.report(stack);
    const started = Date.now();
    this.set(report, { state: operation === "preview" ? "previewing" : operation, step: undefined });
    const done = (change: Partial<StackReport>) => this.set(report, { ...change, ms: report.ms + Date.now() - started, step: undefined });
    try {
      const seen = await runOperation(this.project, stack, operation, (next) => this.set(report, { host: next.host ?? report.host, step: next.current }));
      done(last ? { state: "ok", result: "ok", changes: seen.changes, reboot: seen.reboot !== undefined } : { state: "previewed" });
      return seen;
    } catch (caught) {
      const error = caught instanceof StackRunError ? caught : new StackRunError({ errors: [] }, caught);
      done({ state: "failed", result: "failed", changes: error.seen.changes, reboot: error.seen.reboot !== undefined, error: failureText(error.seen, error.cause) });
      throw error;
    }
  }
}

const quickJobs = (names: readonly string[]): ScheduledJob[] => names.map((name) => ({ name, rebooting: false }));

/** Runs `operation` on every stack, N at a time, none of them counted as rebooting (preview, refresh, destroy, and up when the waves cannot bind). */
async function runAll(fleet: Fleet, names: readonly string[], operation: Operation, limits: Limits): Promise<void> {
  await runScheduled(quickJobs(names), limits, (job) => fleet.run(job.name, operation, true));
}

/**
 * up in waves: every stack previewed N at a time; the ones whose HostReboot would run are
 * scheduled as rebooting (at most M of them run at once); a stack whose preview failed is not run.
 */
async function upInWaves(fleet: Fleet, names: readonly string[], limits: Limits): Promise<void> {
  const previews = await runScheduled(quickJobs(names), limits, (job) => fleet.run(job.name, "preview", false));
  const jobs: Array<ScheduledJob & { reason?: string }> = names.flatMap((name, i) => {
    const preview = previews[i];
    if (!preview.ok) return [];
    fleet.set(fleet.report(name), { state: preview.value.reboot ? "queued to reboot" : "queued" });
    return [{ name, rebooting: preview.value.reboot !== undefined, reason: preview.value.reboot && rebootReason(preview.value.reboot) }];
  });
  const rebooting = jobs.filter((job) => job.rebooting);
  fleet.board.note(
    rebooting.length
      ? `reboot waves, at most ${limits.maxRebooting} at once: ${rebooting.map((job) => `${job.name} (${job.reason})`).join("; ")}`
      : "no stack reboots: no preview would run its HostReboot",
  );
  await runScheduled(jobs, limits, (job) => fleet.run(job.name, "up", true));
}

export async function main(argv: readonly string[], out: NodeJS.WriteStream = process.stdout): Promise<number> {
  let args: FleetArgs | "help";
  try {
    args = parseFleetArgs(argv, process.env.INIT_CWD ?? process.cwd());
  } catch (error) {
    out.write(`${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (args === "help") {
    out.write(`${USAGE}\n`);
    return 0;
  }
  const { operation, limits } = args;
  const env = pulumiEnv();
  const project = await openProject(args.cwd, env);
  const names = fleetStacks(project.stackDir, args.stacks);
  if (names.length === 0) {
    out.write(`no stack files (Pulumi.<stack>.yaml) in ${project.stackDir}: nothing to run\n`);
    return 0;
  }
  const started = Date.now();
  const fleet = new Fleet(project, names, out);
  // When M >= N the waves can never bind (at most N run at all), so up needs no preview to schedule them.
  const waves = operation === "up" && limits.maxRebooting < Math.min(limits.parallel, names.length);
  fleet.board.note(
    `fleet ${operation}: ${names.length} stack${names.length === 1 ? "" : "s"} of ${project.workDir}, ${limits.parallel} at a time` +
      `${operation === "up" ? `, at most ${limits.maxRebooting} rebooting${waves ? " (previewed first)" : ""}` : ""}; backend ${displayBackend(env.PULUMI_BACKEND_URL)}`,
  );
  if (waves) await upInWaves(fleet, names, limits);
  else await runAll(fleet, names, operation, limits);
  fleet.board.draw();
  out.write(`\n${summaryTable(fleet.reports)}\nwall ${formatDuration(Date.now() - started)}\n`);
  return fleet.reports.every((r) => r.result === "ok") ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error: Error) => {
      process.stderr.write(`fleet: ${error.message}\n`);
      process.exitCode = 2;
    },
  );
}
