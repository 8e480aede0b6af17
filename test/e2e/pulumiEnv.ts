// The environment of `npm run pulumi`, read from the same script, so the tests drive the CLI exactly
// as a user does: the CLI that setup built, Node 22, a file backend (here one per test), no network.
import { execFileSync } from "child_process";
import * as path from "path";
import { LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";

export const projectRoot = path.resolve(__dirname, "../..");

export function pulumiEnv(backendDir: string): Record<string, string> {
  const lines = execFileSync("bash", [path.join(projectRoot, "scripts/pulumi-env.sh")], {
    env: { ...process.env, PULUMI_BACKEND_URL: `file://${backendDir}` },
    encoding: "utf8",
  });
  return Object.fromEntries(
    lines
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** A stack of a local program (a project directory with its own Pulumi.yaml), driven through the real CLI. */
export async function localStack(workDir: string, stackName: string, env: Record<string, string>): Promise<Stack> {
  const bin = env.PATH.split(":")[0];
  const pulumiCommand = await PulumiCommand.get({ root: path.dirname(bin), skipVersionCheck: true });
  return LocalWorkspace.createOrSelectStack({ stackName, workDir }, { envVars: env, pulumiCommand });
}

/** One plain CLI call, for what the Automation API does not show as a user sees it. */
export function pulumiCli(env: Record<string, string>, cwd: string, args: string[]): string {
  return execFileSync("pulumi", args, { cwd, env: { ...process.env, ...env }, encoding: "utf8" });
}
