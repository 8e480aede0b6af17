// The fault suites' shared harness (STYLE.md section 5): a seeded PRNG so any run can be replayed
// with FAULT_SEED, a trial runner that records what each trial did and what it broke, and one table
// per suite with totals. The invariants are counted, never sampled: every trial checks the host's
// bytes, and the totals of the violation columns must be 0.

/** What one trial did and found; the counts are violations, summed into the table's totals. */
export interface TrialResult {
  /** The fault and where it hit, e.g. "kill sshd @ 98304/262144 B". */
  fault: string;
  /** What the host held afterwards, or how the run ended, e.g. "old", "new", "refused". */
  outcome: string;
  /** Files holding neither the old nor the new bytes. */
  partialFiles?: number;
  /** Runs after the fault (and the documented recovery) that did not reach the expected bytes. */
  nonConverging?: number;
  /** Files that `destroy` (or a restore) did not give back byte for byte. */
  bytesNotRestored?: number;
  /** Hand edits overwritten or dropped by a run or a restore. */
  lostHandEdits?: number;
  /** Changes to the host that overlapped in time: two runs' (the host lock serialises them), or two rebuilds of one run (its resources take turns). */
  interleavedRuns?: number;
  /** `.vfio-host.*` temp files left next to a target (reported; they match no tool's glob). */
  strayTempFiles?: number;
  /** Recovery steps, defects seen, anything a reader of the table needs. */
  notes?: string;
  /** False when the fault never happened (a kill drawn after its run had ended): recorded, its checks made, not counted as a trial. */
  landed?: boolean;
}

const violations = ["partialFiles", "nonConverging", "bytesNotRestored", "lostHandEdits", "interleavedRuns"] as const;
type Violation = (typeof violations)[number];
const counted = [...violations, "strayTempFiles", "errors"] as const;
type Counted = (typeof counted)[number];
const columns: Array<[Counted, string]> = [
  ["partialFiles", "partial"],
  ["nonConverging", "non-conv"],
  ["bytesNotRestored", "not-restored"],
  ["lostHandEdits", "lost-edits"],
  ["interleavedRuns", "interleaved"],
  ["strayTempFiles", "stray-tmp"],
];

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }
}

/** The run's seed: FAULT_SEED when set (a replay), else a fresh one. Every suite derives its own stream from it. */
export const faultSeed: number = (() => {
  const given = process.env.FAULT_SEED;
  if (given === undefined || given === "") return Math.floor(Math.random() * 2 ** 31);
  const seed = Number(given);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`FAULT_SEED=${given} is not a non-negative integer: use the seed a table printed`);
  return seed;
})();

/** A suite's own stream, so adding or reordering suites does not change another suite's trials. */
export function suitePrng(suite: string): Prng {
  let h = faultSeed ^ 0x811c9dc5;
  for (const ch of suite) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return new Prng(h);
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The trials of one suite, their stage times, and the table that reports them. */
export class FaultTable {
  readonly rows: Array<TrialResult & { trial: number; ms: number; errors: number }> = [];
  private readonly stages: Array<[string, number]> = [];
  readonly prng: Prng;

  constructor(readonly suite: string) {
    this.prng = suitePrng(suite);
  }

  /** Runs `fn` as a named stage and keeps its duration for the table's footer. */
  async stage<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const start = Date.now();
    try {
      return await fn();
    } finally {
      this.stages.push([name, Date.now() - start]);
    }
  }

  /**
   * Runs `count` trials one after another. A trial that throws is recorded as an error (its
   * message in the notes) and counts as a violation: the harness could not check the invariant.
   * Only trials whose fault landed count towards `count` (see TrialResult.landed); at most
   * `attempts` trials are run. Resolves to the number of trials that landed.
   */
  async run(
    count: number,
    trial: (index: number, prng: Prng) => Promise<TrialResult>,
    attempts = count,
  ): Promise<number> {
    return this.stage(`${count} trials`, async () => {
      let landed = 0;
      for (let i = 1; landed < count && i <= attempts; i++) {
        const start = Date.now();
        try {
          const result = await trial(i, this.prng);
          this.rows.push({ ...result, trial: i, ms: Date.now() - start, errors: 0 });
          if (result.landed !== false) landed++;
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          this.rows.push({ trial: i, ms: Date.now() - start, fault: "?", outcome: "harness error", errors: 1, notes: message.split("\n")[0].slice(0, 300) });
          landed++;
        }
      }
      return landed;
    });
  }

  /** Adds a trial judged outside `run`: one whose fault is a step of a longer scenario. */
  record(result: TrialResult, ms = 0): void {
    this.rows.push({ ...result, trial: this.rows.length + 1, ms, errors: 0 });
  }

  totals(): Record<Counted, number> {
    const sum = (key: Counted) => this.rows.reduce((n, row) => n + (row[key] ?? 0), 0);
    return Object.fromEntries(counted.map((key) => [key, sum(key)])) as Record<Counted, number>;
  }

  /** One table: a row per trial, then the totals, the seed that replays it, and the stage times. */
  print(): void {
    const header = ["#", "ms", "fault", "outcome", ...columns.map(([, title]) => title), "errors", "notes"];
    const body = this.rows.map((row) => [
      String(row.trial),
      String(row.ms),
      row.fault,
      row.outcome,
      ...columns.map(([key]) => String(row[key] ?? 0)),
      String(row.errors),
      row.notes ?? "",
    ]);
    const totals = this.totals();
    const total = ["total", "", `${this.rows.length} trials`, "", ...columns.map(([key]) => String(totals[key])), String(totals.errors), ""];
    const widths = header.map((_, c) => Math.max(...[header, ...body, total].map((r) => (c === header.length - 1 ? 0 : r[c].length))));
    const line = (cells: string[]) => cells.map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]))).join(" | ").trimEnd();
    const rule = widths.map((w) => "-".repeat(w)).join("-|-");
    console.log(
      [
        `fault suite: ${this.suite} (seed ${faultSeed}; replay: FAULT_SEED=${faultSeed} npm run test:faults)`,
        line(header),
        rule,
        ...body.map(line),
        rule,
        line(total),
        `stages: ${this.stages.map(([name, ms]) => `${name} ${seconds(ms)}`).join(", ")}`,
      ].join("\n"),
    );
  }

  /** The violation totals, for `expect(...).toEqual(noViolations)`. */
  violations(): Record<Violation | "errors", number> {
    const { strayTempFiles: _, ...rest } = this.totals();
    return rest;
  }
}

export const noViolations = { partialFiles: 0, nonConverging: 0, bytesNotRestored: 0, lostHandEdits: 0, interleavedRuns: 0, errors: 0 };
