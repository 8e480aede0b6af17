import { spawn, StdioOptions } from "node:child_process";

/** The environment every test-host command gets: the caller's locale or variables must not leak into the tree. */
export const commandEnv = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C.UTF-8" };

/**
 * Runs a command without a shell and resolves with its stdout; rejects with the command line,
 * exit status and stderr so a failed setup step says what failed. `stderr: "inherit"` streams
 * progress (mmdebstrap) to the terminal instead of collecting it. `env` replaces commandEnv (the
 * lab's scripts need the caller's LAB_* variables).
 */
export function runCommand(command: string, args: string[], options: { stderr?: "inherit"; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const stdio: StdioOptions = ["ignore", "pipe", options.stderr ?? "pipe"];
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio, env: options.env ?? commandEnv });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) return resolve(stdout);
      const status = signal ? `signal ${signal}` : `exit ${code}`;
      reject(new Error(`${command} ${args.join(" ")} failed (${status})${stderr ? `:\n${stderr.trim()}` : ""}`));
    });
  });
}
