// What the lab suites share: their stage times, printed at the end (a new lab suite prints where its
// time goes), and a plain reboot of the lab as a user runs one.
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
  await onLab((host) => host.run(["systemd-run", "--on-active=1", "systemctl", "reboot"]));
  await closeAllConnections();
  for (let i = 0; i < attempts && (await bootId().catch(() => before)) === before; i++) {
    await new Promise((r) => setTimeout(r, 3_000));
    await closeAllConnections();
  }
}
