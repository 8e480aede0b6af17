// The fleet's scheduler (scripts/fleet/schedule.ts): at most N stacks run, at most M of the
// rebooting ones, every stack runs exactly once, and a failure never stops the others, whatever
// order the runs end in (fast-check's scheduler replays the orders).
import fc from "fast-check";
import { Limits, nextJobs, parseLimit, runScheduled, ScheduledJob } from "../../../scripts/fleet/schedule";

const job = (name: string, rebooting = false): ScheduledJob => ({ name, rebooting });

describe("nextJobs", () => {
  it("fills the free slots in order", () => {
    expect(nextJobs([job("a"), job("b"), job("c")], [job("x")], { parallel: 3, maxRebooting: 1 }).map((j) => j.name)).toEqual(["a", "b"]);
  });

  it("starts rebooting stacks first while a reboot slot is free, the quick ones beside them", () => {
    const pending = [job("a"), job("r1", true), job("b"), job("r2", true)];
    expect(nextJobs(pending, [], { parallel: 3, maxRebooting: 1 }).map((j) => j.name)).toEqual(["r1", "a", "b"]);
  });

  it("holds a rebooting stack while the wave is full without holding back the stacks behind it", () => {
    const pending = [job("r2", true), job("a")];
    expect(nextJobs(pending, [job("r1", true)], { parallel: 4, maxRebooting: 1 }).map((j) => j.name)).toEqual(["a"]);
  });

  it("starts nothing while every slot is taken", () => {
    expect(nextJobs([job("a")], [job("x"), job("y")], { parallel: 2, maxRebooting: 2 })).toEqual([]);
  });

  const state = fc.record({
    limits: fc.record({ parallel: fc.integer({ min: 1, max: 6 }), maxRebooting: fc.integer({ min: 1, max: 6 }) }),
    pending: fc.array(fc.boolean(), { maxLength: 12 }),
    running: fc.array(fc.boolean(), { maxLength: 6 }),
  });

  it("never exceeds the limits, and leaves no slot idle that a pending stack could take", () => {
    fc.assert(
      fc.property(state, ({ limits, pending, running }) => {
        const runningJobs = running.map((r, i) => job(`run${i}`, r));
        // Only states the scheduler can reach: the running ones within the limits.
        fc.pre(runningJobs.length <= limits.parallel && running.filter(Boolean).length <= limits.maxRebooting);
        const pendingJobs = pending.map((r, i) => job(`p${i}`, r));
        const started = nextJobs(pendingJobs, runningJobs, limits);
        const after = [...runningJobs, ...started];
        expect(after.length).toBeLessThanOrEqual(limits.parallel);
        expect(after.filter((j) => j.rebooting).length).toBeLessThanOrEqual(limits.maxRebooting);
        expect(new Set(started).size).toBe(started.length);
        started.forEach((j) => expect(pendingJobs).toContain(j));
        // Work-conserving: asked again, it starts nothing more.
        expect(nextJobs(pendingJobs.filter((j) => !started.includes(j)), after, limits)).toEqual([]);
      }),
    );
  });
});

describe("runScheduled", () => {
  const jobsArbitrary = fc.array(fc.record({ rebooting: fc.boolean(), fails: fc.boolean() }), { minLength: 0, maxLength: 14 });
  const limitsArbitrary = fc.record({ parallel: fc.integer({ min: 1, max: 5 }), maxRebooting: fc.integer({ min: 1, max: 5 }) });

  it("runs every stack exactly once, at most N at once and at most M rebooting, whatever order they end in and whichever fail", async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), jobsArbitrary, limitsArbitrary, async (s, specs, limits: Limits) => {
        const jobs = specs.map((spec, i) => ({ name: `s${i}`, rebooting: spec.rebooting, fails: spec.fails }));
        const calls: string[] = [];
        let running = 0;
        let rebooting = 0;
        let peak = 0;
        let peakRebooting = 0;
        const done = runScheduled(jobs, limits, async (j) => {
          calls.push(j.name);
          running++;
          if (j.rebooting) rebooting++;
          peak = Math.max(peak, running);
          peakRebooting = Math.max(peakRebooting, rebooting);
          try {
            await s.schedule(Promise.resolve(j.name));
            if (j.fails) throw new Error(`${j.name} failed`);
            return `${j.name} done`;
          } finally {
            running--;
            if (j.rebooting) rebooting--;
          }
        });
        await s.waitFor(done);
        const outcomes = await done;

        expect(peak).toBeLessThanOrEqual(limits.parallel);
        expect(peakRebooting).toBeLessThanOrEqual(limits.maxRebooting);
        expect([...calls].sort()).toEqual(jobs.map((j) => j.name).sort());
        expect(outcomes).toEqual(jobs.map((j) => (j.fails ? { ok: false, error: new Error(`${j.name} failed`) } : { ok: true, value: `${j.name} done` })));
        // It does not serialise them: at the start, as many run as the limits let.
        const quick = jobs.filter((j) => !j.rebooting).length;
        expect(peak).toBeGreaterThanOrEqual(Math.min(limits.parallel, quick + Math.min(limits.maxRebooting, jobs.length - quick)));
      }),
    );
  });

  it("a run that throws before its first await is that stack's failure, not the fleet's", async () => {
    const outcomes = await runScheduled([job("a"), job("b")], { parallel: 1, maxRebooting: 1 }, (j) => {
      if (j.name === "a") throw new Error("a broke");
      return Promise.resolve("b ok");
    });
    expect(outcomes).toEqual([{ ok: false, error: new Error("a broke") }, { ok: true, value: "b ok" }]);
  });

  it("refuses limits below 1, with which nothing could start", () => {
    expect(() => runScheduled([job("a")], { parallel: 0, maxRebooting: 1 }, async () => undefined)).toThrow("limits must be at least 1: parallel 0, maxRebooting 1");
  });

  it("with M = 1 the rebooting stacks run one after another: the waves", async () => {
    const log: string[] = [];
    const jobs = [job("r1", true), job("r2", true), job("a"), job("r3", true), job("b")];
    await runScheduled(jobs, { parallel: 3, maxRebooting: 1 }, async (j) => {
      log.push(`start ${j.name}`);
      await new Promise((resolve) => setTimeout(resolve, j.rebooting ? 20 : 5));
      log.push(`end ${j.name}`);
    });
    const rebootSpans = ["r1", "r2", "r3"].map((name) => [log.indexOf(`start ${name}`), log.indexOf(`end ${name}`)]);
    expect(rebootSpans[0][1]).toBeLessThan(rebootSpans[1][0]);
    expect(rebootSpans[1][1]).toBeLessThan(rebootSpans[2][0]);
    // The quick stacks ran beside the first wave.
    expect(log.indexOf("end b")).toBeLessThan(log.indexOf("end r1"));
  });
});

describe("parseLimit", () => {
  it("takes a whole number of at least 1, or the default", () => {
    expect(parseLimit("--parallel", "8", 2)).toBe(8);
    expect(parseLimit("--parallel", undefined, 2)).toBe(2);
  });

  it("names the flag and an example when the value is not one", () => {
    expect(() => parseLimit("--max-rebooting", "0", 1)).toThrow('--max-rebooting "0" is not a whole number of at least 1 (e.g. --max-rebooting 1)');
    expect(() => parseLimit("--parallel", "four", 2)).toThrow('--parallel "four" is not a whole number of at least 1 (e.g. --parallel 2)');
  });
});
