// What the fleet prints: a status line per stack while it runs, and the summary table at the end.
// Pure rendering; scripts/fleet.ts decides when to print and where (rewritten in place on a
// terminal, one line per state change otherwise).
import type { OpMap } from "@pulumi/pulumi/automation";
import type { RunObservation } from "./events";

/** One stack's run so far, as the status line and the summary show it. */
export interface StackReport {
  stack: string;
  /** host[:port], once a run's prelude named it. */
  host?: string;
  /** Where it is: "queued", "previewing", "up", "ok", "failed"... */
  state: string;
  /** The resource step in flight ("update s01-cmdline"), shown only on a terminal's live lines. */
  step?: string;
  result?: "ok" | "failed";
  /** The engine's counts of the run that decides the result (for `up`, the update, not its preview). */
  changes?: OpMap;
  /** Its HostReboot ran (for a preview: would run). */
  reboot: boolean;
  /** Time spent running, queueing not counted. */
  ms: number;
  /** The error that failed it, as the engine or the CLI said it. */
  error?: string;
}

/** "+1 ~2 -0", and "+-N" for replacements, which delete and create. */
export function formatChanges(ops: OpMap | undefined): string {
  if (!ops) return "-";
  const n = (op: keyof OpMap) => ops[op] ?? 0;
  const replaced = n("replace") + n("create-replacement");
  return `+${n("create")} ~${n("update")} -${n("delete")}${replaced ? ` +-${replaced}` : ""}`;
}

export const formatDuration = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

export function statusLine(report: StackReport): string {
  return `${report.stack}${report.host ? ` (${report.host})` : ""}: ${report.state}${report.step ? `, ${report.step}` : ""}`;
}

/** The columns padded to their widest cell; the last column is not padded. */
function table(rows: string[][]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]))).join("  ")).join("\n");
}

/** The table, a count line, and each failure's message in full under it. */
export function summaryTable(reports: readonly StackReport[]): string {
  const rows = [
    ["STACK", "HOST", "RESULT", "CHANGES", "REBOOT", "DURATION"],
    ...reports.map((r) => [r.stack, r.host ?? "-", r.result ?? "not run", formatChanges(r.changes), r.reboot ? "yes" : "no", formatDuration(r.ms)]),
  ];
  const failed = reports.filter((r) => r.result !== "ok");
  const counts = `${reports.length} stack${reports.length === 1 ? "" : "s"}: ${reports.length - failed.length} ok, ${failed.length} failed`;
  const failures = failed.map((r) => `${r.stack}${r.host ? ` (${r.host})` : ""} failed:\n${indent(r.error ?? "it did not run")}`);
  return [table(rows), counts, ...failures].join("\n");
}

const indent = (text: string) => text.split("\n").map((line) => `  ${line}`).join("\n");

/**
 * The message that failed a run: the first error a resource reported (the cause), else the engine's
 * own error, else the CLI's `error:` lines (a refused stack lock fails before the engine starts, so
 * only the CLI says it), else the error's own message.
 */
export function failureText(seen: RunObservation, error: unknown): string {
  const fromEngine = seen.errors.find((e) => e.resource) ?? seen.errors[0];
  if (fromEngine) return fromEngine.resource ? `${fromEngine.resource}: ${fromEngine.message}` : fromEngine.message;
  const message = error instanceof Error ? error.message : String(error);
  const stderr = /\n stderr: ([\s\S]*?)\n err\?: /.exec(message)?.[1] ?? message;
  const cliErrors = cliErrorLines(stderr);
  return cliErrors || message.trim().split("\n")[0];
}

/** Each `error: ...` line of the CLI's stderr with the indented lines that continue it. */
export function cliErrorLines(stderr: string): string {
  const lines: string[] = [];
  let inError = false;
  for (const line of stderr.split("\n")) {
    if (line.startsWith("error: ")) inError = true;
    else if (!/^\s+\S/.test(line)) inError = false;
    if (inError) lines.push(line.trimEnd());
  }
  return lines.join("\n");
}

/**
 * The terminal bytes that replace the block of `previous` status lines printed last with `lines`:
 * up to the block's first line, then each line cleared and rewritten, so the block stays in place
 * under whatever was printed above it.
 */
export function redrawBlock(lines: readonly string[], previous: number, columns: number): string {
  const up = previous > 0 ? `\x1b[${previous}F` : "";
  const fit = (line: string) => (line.length > columns - 1 ? `${line.slice(0, columns - 2)}…` : line);
  const cleared = previous > lines.length ? "\x1b[J" : "";
  return `${up}${lines.map((line) => `\x1b[2K${fit(line)}\n`).join("")}${cleared}`;
}
