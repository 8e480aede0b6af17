// A real ssh-agent for the tests that log in through one: started in the foreground (-D), so the
// PID the caller holds is the agent's own and the caller ends it by that PID.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";

/** Starts `ssh-agent -D -a SOCKET` and waits (up to 10 s) until it listens there. */
export async function startSshAgent(socket: string): Promise<ChildProcess> {
  const agent = spawn("ssh-agent", ["-D", "-a", socket], { stdio: "ignore" });
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(socket)) {
    if (Date.now() > deadline || agent.exitCode !== null) throw new Error(`ssh-agent did not create ${socket}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return agent;
}
