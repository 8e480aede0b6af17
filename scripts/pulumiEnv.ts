// The environment of `npm run pulumi`, read from scripts/pulumi-env.sh so that scripts and tests
// drive the CLI exactly as a user does: the CLI setup built, Node 22, the backend, no network.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

/** The checkout's root (where Pulumi.yaml is), from source under ts-jest or compiled under dist/. */
export const projectRoot = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, "Pulumi.yaml"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no Pulumi.yaml above ${__dirname}`);
    dir = parent;
  }
  return dir;
})();

/** KEY=VALUE pairs of pulumi-env.sh; `backendDir` gives a file backend of its own (tests). */
export function pulumiEnv(backendDir?: string): Record<string, string> {
  const lines = execFileSync("bash", [path.join(projectRoot, "scripts/pulumi-env.sh")], {
    env: backendDir ? { ...withoutBackendUrl(process.env), VFIO_HOST_STATE_DIR: backendDir } : process.env,
    encoding: "utf8",
  });
  return Object.fromEntries(
    lines
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

function withoutBackendUrl(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { PULUMI_BACKEND_URL: _ignored, ...rest } = env;
  return rest;
}

/** One plain CLI call with that environment. */
export function pulumiCli(env: Record<string, string>, args: string[], options: { cwd?: string; input?: string } = {}): string {
  return execFileSync("pulumi", args, {
    cwd: options.cwd ?? projectRoot,
    env: { ...process.env, ...env },
    input: options.input,
    encoding: "utf8",
  });
}
