// The bench's arithmetic: medians, the side-by-side table's ratio and verdict, and a run's breakdown.
import fc from "fast-check";
import { breakdown, comparisonTable, cpuByProcess, summarize } from "../../../bench/figures";
import type { TimingLine } from "../../../providers/timings";

test("summarize: the median of an odd and of an even count, with min and max", () => {
  expect(summarize([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, n: 3 });
  expect(summarize([4, 1, 3, 2])).toEqual({ median: 2.5, min: 1, max: 4, n: 4 });
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0, max: 1e4, noNaN: true }), { minLength: 1 }), (xs) => {
      const m = summarize(xs);
      return m.min <= m.median && m.median <= m.max && m.n === xs.length;
    }),
  );
});

test("the table gives the ratio of the medians and says whether the target is met", () => {
  const run = (wallS: number) => ({ wallS, cpuS: 1, sshLogins: 1 });
  const table = comparisonTable([
    { job: "no-op", project: { command: "pulumi up", runs: [run(2), run(3), run(100)] }, ansible: { command: "ansible-playbook", runs: [run(20), run(30)] }, target: 0.15 },
    { job: "preview", project: { command: "pulumi preview", runs: [run(9)] }, ansible: { command: "ansible-playbook --check", runs: [run(10)] }, target: 0.15 },
    { job: "converge", project: { command: "pulumi up", runs: [{ wallS: 5, cpuS: 1, sshLogins: NaN }] }, ansible: { command: "ansible-playbook", runs: [run(10)] } },
  ]);
  expect(table).toContain("| no-op | `pulumi up` | 3.0 (2.0–100.0) | 1.0 | 1 | `ansible-playbook` | 25.0 (20.0–30.0) | 1.0 | 1 | 0.12 | ≤ 0.15 met |");
  expect(table).toContain("| 0.90 | ≤ 0.15 NOT met |");
  expect(table).toContain("| converge | `pulumi up` | 5.0 (5.0–5.0) | 1.0 | — |");
});

test("the breakdown lines up the processes with the CLI and leaves the uncovered time to the engine", () => {
  const t0 = 1_000_000;
  const line = (role: string, what: string, start: number, end: number, extra: Partial<TimingLine> = {}): TimingLine => ({ pid: 1, role, what, start: t0 + start, end: t0 + end, ...extra });
  const lines = breakdown(
    [
      line("program", "process", 500, 1500),
      line("program", "declared", 500, 1700),
      line("provider", "process", 2000, 3000),
      line("provider", "KernelCmdline.check", 3000, 5000, { roundTrips: 3, connections: 1, sshMs: 1800 }),
      line("provider", "command", 3100, 3500, { step: "KernelCmdline.check", command: "cat" }),
      line("provider", "exit", 5500, 5500),
    ],
    t0,
    t0 + 6000,
  );
  expect(lines.map((l) => [l.stage, l.atS, l.seconds])).toEqual([
    ["CLI and language host, until the program's process starts", 0, 0.5],
    ["program: Node, @pulumi/pulumi and the project's modules load", 0.5, 1],
    ["program: config read, resources declared", 1.5, 0.2],
    ["dynamic provider: process starts and loads", 2, 1],
    ["KernelCmdline.check", 3, 2],
    // 6 s of wall, 4.7 s covered (0-1.7, 2-5): the rest is the engine's and the CLI's.
    ["engine between steps, state write, CLI exit (the rest)", 6, expect.closeTo(1.3, 5)],
  ]);
  expect(lines[4]).toMatchObject({ roundTrips: 3, connections: 1, sshS: 1.8 });
});

test("the CPU by process: each process's most recorded, the rest of the run's tree to the CLI and language host", () => {
  const line = (pid: number, role: string, what: string, cpuMs: number): TimingLine => ({ pid, role, what, start: 0, end: 0, cpuMs });
  const rows = cpuByProcess(
    [line(7, "program", "process", 400), line(7, "program", "declared", 600), line(9, "provider", "process", 300), line(9, "provider", "VfioBinding.check", 900), line(7, "program", "exit", 1100)],
    4,
  );
  expect(rows.map((r) => [r.process.split(" ")[0], r.cpuS])).toEqual([
    ["program", 1.1],
    ["dynamic", 0.9],
    ["CLI", expect.closeTo(2, 5)],
  ]);
});
