// One command a plan asks for, as data: pure planners return HostSteps, so preview can list them and
// tests can compare them, and runStep is the one place that carries them out over the SSH layer.
import type { RemoteHost } from "./ssh/host";

/** One command for the SSH layer to run (`host.run(step.argv, step)`): an argv array, never a shell string. */
export interface HostStep {
  /** What the step does, for preview output and logs. */
  readonly describe: string;
  readonly argv: readonly string[];
  /** Bytes to feed the command's standard input. */
  readonly stdin?: string;
  /** For commands that may outlast the SSH layer's default (downloads, decompression). */
  readonly timeoutMs?: number;
  /**
   * After the command succeeds, run `argv` every second until its trimmed standard output equals
   * `until`; fail with `timeoutMessage` after `timeoutSeconds`. Used where virsh returns before the
   * guest has done what was asked (`virsh shutdown` only sends the ACPI event).
   */
  readonly waitFor?: {
    readonly argv: readonly string[];
    readonly until: string;
    readonly timeoutSeconds: number;
    readonly timeoutMessage: string;
  };
}

/** A step's `waitFor` did not see its value in time: the host is as the step left it. */
export class WaitTimeoutError extends Error {}

/** Runs one step: the command (stdin and timeout as the step says), then its waitFor poll, once a second. */
export async function runStep(host: RemoteHost, step: HostStep): Promise<void> {
  await host.run(step.argv, { stdin: step.stdin, timeoutMs: step.timeoutMs });
  const wait = step.waitFor;
  if (!wait) return;
  const deadline = Date.now() + wait.timeoutSeconds * 1000;
  while ((await host.exec(wait.argv)).stdout.trim() !== wait.until) {
    if (Date.now() >= deadline) throw new WaitTimeoutError(wait.timeoutMessage);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export async function runSteps(host: RemoteHost, steps: readonly HostStep[]): Promise<void> {
  for (const step of steps) await runStep(host, step);
}
