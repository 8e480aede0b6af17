// What the lab suites share: their stage times, printed at the end (a new lab suite prints where its
// time goes), a plain reboot of the lab as a user runs one, setting stack config, and the fallen-back
// trial's message.
import type { Stack } from "@pulumi/pulumi/automation";
import { closeAllConnections, RemoteHost } from "../../providers/ssh/host";

export class StageTimes {
  private readonly lines: string[] = [];

  async timed<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      return await fn();
    } finally {
      this.lines.push(`${what}: ${Math.round((Date.now() - started) / 1000)} s`);
    }
  }

  print(title: string): void {
    console.log(`${title}:\n  ${this.lines.join("\n  ")}`);
  }
}

/** `systemctl reboot` on the lab, then the wait (3 s per attempt) until it answers with a new boot_id. */
export async function rebootLab(onLab: <T>(fn: (host: RemoteHost) => Promise<T>) => Promise<T>, bootId: () => Promise<string>, attempts: number): Promise<void> {
  const before = await bootId();
  // A timer's default accuracy is a minute: without the property the reboot started 10 s late (measured).
  await onLab((host) => host.run(["systemd-run", "--on-active=1", "--timer-property=AccuracySec=100ms", "systemctl", "reboot"]));
  await closeAllConnections();
  for (let i = 0; i < attempts && (await bootId().catch(() => before)) === before; i++) {
    await new Promise((r) => setTimeout(r, 3_000));
    await closeAllConnections();
  }
}

/** What `up` says when a trial boot fell back to the previous configuration. */
export const TRIAL_FELL_BACK = /the trial boot failed; the host is back on its previous configuration; nothing was made permanent/;

/** Sets stack config keys as `pulumi config set` would: strings as they are, anything else as JSON. */
export async function setStackConfig(stack: Stack, values: Record<string, unknown>): Promise<void> {
  await stack.setAllConfig(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { value: typeof v === "string" ? v : JSON.stringify(v) }])));
}
