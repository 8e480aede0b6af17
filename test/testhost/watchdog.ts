import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { commandEnv } from "./command";

/**
 * A detached `sh` that runs `teardown` (with `args` as "$1"...) once its stdin closes: when the
 * returned trigger closes it, or when this process dies in any way, even by SIGKILL.
 * (process.on("exit") cannot do this under jest, which hands tests a copy of `process` whose
 * "exit" never fires.) What a test started is torn down even when the test is not.
 */
export function startWatchdog(name: string, teardown: string, args: readonly string[]): () => Promise<void> {
  const watchdog = spawn("sh", ["-c", `read -r _; ${teardown}`, name, ...args], {
    stdio: ["pipe", "ignore", "ignore"],
    detached: true, // Ctrl-C in the terminal must not kill it before it has cleaned up.
    env: commandEnv,
  });
  const exited = new Promise<void>((resolve) => watchdog.once("exit", () => resolve()));
  // Something a test forgot to stop must not keep the test process alive.
  watchdog.unref();
  return async () => {
    watchdog.ref();
    watchdog.stdin?.end();
    await exited;
  };
}

/** /proc/PID/stat's start time (field 22, proc(5)), so a reused PID is not taken for a process a record names; "" when gone. */
export function processStartTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses; the fields after the last ")" are fixed.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return "";
  }
}
