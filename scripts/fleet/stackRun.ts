// One stack's run through the Automation API: the real CLI with the project's environment in the
// project directory, the stack created when the backend has not seen it yet (a new stack file, or a
// new backend), and the engine's events folded into a RunObservation as they come.
import * as fs from "node:fs";
import * as path from "node:path";
import { EngineEvent, LocalWorkspace, ProjectSettings, PulumiCommand, Stack, StackNotFoundError } from "@pulumi/pulumi/automation";
import { emptyObservation, observe, RunObservation } from "./events";

export type Operation = "preview" | "up" | "refresh" | "destroy";

/** The project the fleet runs: its directory, where its stack files are, and the CLI environment of every run. */
export interface FleetProject {
  workDir: string;
  /** The directory of the Pulumi.<stack>.yaml files (Pulumi.yaml's stackConfigDir, else workDir). */
  stackDir: string;
  /** One workspace for all the stacks; it selects none (see openProject). */
  workspace: LocalWorkspace;
}

/** A run that failed, with what its events said up to the failure. */
export class StackRunError extends Error {
  constructor(
    readonly seen: RunObservation,
    readonly cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

export async function openProject(workDir: string, env: Record<string, string>): Promise<FleetProject> {
  if (!fs.existsSync(path.join(workDir, "Pulumi.yaml"))) throw new Error(`no Pulumi.yaml in ${workDir}: --cwd names a Pulumi project directory (default: this checkout)`);
  // The first PATH entry is the CLI setup built (scripts/pulumi-env.sh); it is the version the project pins, so no check.
  const pulumiCommand = await PulumiCommand.get({ root: path.dirname(env.PATH.split(":")[0]), skipVersionCheck: true });
  const workspace = await LocalWorkspace.create({ workDir, envVars: env, pulumiCommand });
  // Every command the Automation API runs names its stack (--stack NAME), so the fleet needs no
  // current stack: selecting each one would cost a CLI run per stack and leave the user's own
  // `pulumi` commands pointed at whichever stack the fleet happened to run last.
  workspace.selectStack = async () => undefined;
  // The Automation API's type leaves it out, but it reads Pulumi.yaml whole.
  const settings = (await workspace.projectSettings()) as ProjectSettings & { stackConfigDir?: string };
  return { workDir, stackDir: path.resolve(workDir, settings.stackConfigDir ?? "."), workspace };
}

/**
 * The stacks to run: the ones named, each of which must have its stack file, or by default every
 * Pulumi.<stack>.yaml in the stack directory except the *.example ones, which are templates to copy.
 */
export function fleetStacks(stackDir: string, named: readonly string[]): string[] {
  const files = fs.existsSync(stackDir) ? fs.readdirSync(stackDir) : [];
  const all = files.flatMap((file) => /^Pulumi\.(.+)\.yaml$/.exec(file)?.[1] ?? []).sort();
  if (named.length === 0) return all.filter((stack) => !stack.endsWith(".example"));
  const missing = named.filter((stack) => !all.includes(stack));
  if (missing.length) {
    throw new Error(
      `no stack file ${missing.map((stack) => `Pulumi.${stack}.yaml`).join(", ")} in ${stackDir}: the fleet runs the stacks whose files are there (${all.join(", ") || "none yet"})`,
    );
  }
  return [...new Set(named)];
}

/**
 * Runs the operation on the stack; `onChange` hears each event's effect. Resolves with the
 * observation, or rejects with a StackRunError carrying it. A stack the backend does not know yet
 * is created (`pulumi stack init`, from its stack file's settings) and the operation run again.
 */
export async function runOperation(project: FleetProject, name: string, operation: Operation, onChange: (seen: RunObservation) => void): Promise<RunObservation> {
  const stack = await Stack.select(name, project.workspace);
  // The fleet reads a run's result from its events. Without these the Automation API would run
  // `pulumi stack output` twice and `pulumi stack history` after every up (history after refresh
  // and destroy): three more CLI runs per stack, for results the fleet never reads.
  stack.outputs = async () => ({});
  stack.info = async () => undefined;
  for (let created = false; ; created = true) {
    let seen = emptyObservation();
    const onEvent = (event: EngineEvent) => {
      const next = observe(seen, event);
      if (next !== seen) onChange((seen = next));
    };
    const options = { onEvent, color: "never" as const };
    try {
      if (operation === "preview") await stack.preview(options);
      else if (operation === "up") await stack.up(options);
      else if (operation === "refresh") await stack.refresh(options);
      else await stack.destroy(options);
      return seen;
    } catch (error) {
      if (!(error instanceof StackNotFoundError) || created) throw new StackRunError(seen, error);
      try {
        await project.workspace.createStack(name);
      } catch (initError) {
        throw new StackRunError(seen, initError);
      }
    }
  }
}
