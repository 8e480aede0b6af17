// This machine's view of processes the suites started, from /proc (proc(5)).
import * as fs from "node:fs";

/** The children of `pid`, from every thread: a Go program (the Pulumi CLI) forks from any of its threads. */
export function childPids(pid: number): number[] {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).flatMap((task) => {
      try {
        return fs.readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
      } catch {
        return []; // the thread ended meanwhile
      }
    });
  } catch {
    return []; // the process ended meanwhile
  }
}

/** The command line of `pid`, NULs as spaces; "" once it is gone. */
export function commandLine(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

const signal = (pid: number, name: NodeJS.Signals) => {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
};

/**
 * SIGKILL to `root` and everything below it, whatever process group each is in. The tree is
 * stopped first, top down until no new process appears, so nothing forks or re-parents away
 * between the listing and the kill.
 */
export function killTree(root: number): void {
  const stopped = new Set<number>();
  for (let fresh = [root]; fresh.length > 0; ) {
    fresh.forEach((pid) => signal(pid, "SIGSTOP"));
    fresh.forEach((pid) => stopped.add(pid));
    fresh = [...stopped].flatMap(childPids).filter((pid) => !stopped.has(pid));
  }
  stopped.forEach((pid) => signal(pid, "SIGKILL"));
}
