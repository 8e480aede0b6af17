// Stacks of local programs driven through the real CLI (Automation API), in the project's environment.
import * as path from "path";
import { LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";

export { projectRoot, pulumiCli, pulumiEnv } from "../../scripts/pulumiEnv";

/** A stack of a local program (a project directory with its own Pulumi.yaml). */
export async function localStack(workDir: string, stackName: string, env: Record<string, string>): Promise<Stack> {
  const bin = env.PATH.split(":")[0];
  const pulumiCommand = await PulumiCommand.get({ root: path.dirname(bin), skipVersionCheck: true });
  return LocalWorkspace.createOrSelectStack({ stackName, workDir }, { envVars: env, pulumiCommand });
}
