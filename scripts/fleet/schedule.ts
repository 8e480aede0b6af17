// The fleet's scheduler: which stacks run next, with at most `parallel` running and at most
// `maxRebooting` of the rebooting ones among them (the waves). The choice is a pure function of
// what is pending and what runs; runScheduled only drives it, so the property tests can replay any
// order of completions and failures without a host.

/** A stack's run as the scheduler sees it. */
export interface ScheduledJob {
  readonly name: string;
  /** Its HostReboot would run: it counts against maxRebooting for as long as it runs. */
  readonly rebooting: boolean;
}

export interface Limits {
  /** At most this many runs at once (--parallel). */
  readonly parallel: number;
  /** At most this many rebooting runs at once (--max-rebooting). */
  readonly maxRebooting: number;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * The pending jobs to start now, given the ones running: the free slots are filled in the pending
 * order, rebooting jobs first while a reboot slot is free (a reboot is the longest run, so the
 * waves start early and the quick stacks fill the slots beside them); a rebooting job with no
 * reboot slot waits without holding back the jobs behind it.
 */
export function nextJobs<J extends ScheduledJob>(pending: readonly J[], running: readonly ScheduledJob[], limits: Limits): J[] {
  let slots = limits.parallel - running.length;
  let rebootSlots = limits.maxRebooting - running.filter((job) => job.rebooting).length;
  const started: J[] = [];
  for (const job of [...pending.filter((j) => j.rebooting), ...pending.filter((j) => !j.rebooting)]) {
    if (slots <= 0) break;
    if (job.rebooting) {
      if (rebootSlots <= 0) continue;
      rebootSlots--;
    }
    slots--;
    started.push(job);
  }
  return started;
}

/** A limit as the command line gives it: a whole number of at least 1, or the error that names the flag. */
export function parseLimit(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new Error(`${flag} "${value}" is not a whole number of at least 1 (e.g. ${flag} ${fallback})`);
  return Number(value);
}

/**
 * Runs every job exactly once under the limits and resolves, once all have settled, with their
 * outcomes in the jobs' order. A job that throws is a failed outcome: it frees its slot and the
 * others go on.
 */
export function runScheduled<J extends ScheduledJob, T>(jobs: readonly J[], limits: Limits, run: (job: J) => Promise<T>): Promise<Outcome<T>[]> {
  // With a limit below 1 nothing could ever start.
  if (!(limits.parallel >= 1 && limits.maxRebooting >= 1)) throw new Error(`limits must be at least 1: parallel ${limits.parallel}, maxRebooting ${limits.maxRebooting}`);
  const pending = [...jobs];
  const running: J[] = [];
  const outcomes = new Map<J, Outcome<T>>();
  return new Promise((resolve) => {
    const pump = () => {
      for (const job of nextJobs(pending, running, limits)) {
        pending.splice(pending.indexOf(job), 1);
        running.push(job);
        // Through a promise even when `run` throws synchronously: that, too, is the job's failure.
        Promise.resolve()
          .then(() => run(job))
          .then(
            (value): Outcome<T> => ({ ok: true, value }),
            (error: unknown): Outcome<T> => ({ ok: false, error }),
          )
          .then((outcome) => {
            outcomes.set(job, outcome);
            running.splice(running.indexOf(job), 1);
            pump();
          });
      }
      if (pending.length === 0 && running.length === 0) resolve(jobs.map((job) => outcomes.get(job)!));
    };
    pump();
  });
}
