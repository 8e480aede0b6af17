// Writes the `lab` stack's config (stacks/Pulumi.lab.yaml) from the running lab VM's lab.json: the
// connection with the guest's host key pinned, the private key as a secret, and a selection of the
// lab's four ICH9 USB controllers, which share one IOMMU group like the reference host's group 4.
//
//   node dist/scripts/labStack.js [stack]        (npm run lab:stack)
import * as fs from "fs";
import { LabState, readLabState } from "./lab/labState";
import { pulumiCli, pulumiEnv } from "./pulumiEnv";

/** The lab's USB controllers, by id (their group is only known once the IOMMU is on). */
export const LAB_USB_CONTROLLER_IDS = ["8086:2934", "8086:2935", "8086:2936", "8086:293a"];

export function writeLabStack(stack: string, lab: LabState, env: Record<string, string> = pulumiEnv()): void {
  const run = (args: string[], input?: string) => pulumiCli(env, [...args, "--stack", stack], { input });
  pulumiCli(env, ["stack", "select", "--create", stack]);
  run([
    "config", "set-all",
    "--plaintext", `host=${lab.host}`,
    "--plaintext", `port=${lab.port}`,
    "--plaintext", `user=${lab.user}`,
    "--plaintext", `hostKey=${lab.hostKey}`,
    "--plaintext", `kernelArgs=${JSON.stringify(["intel_iommu=on", "iommu=pt"])}`,
    "--plaintext", `vfio=${JSON.stringify({ devices: LAB_USB_CONTROLLER_IDS })}`,
  ]);
  run(["config", "set", "--secret", "sshPrivateKey"], fs.readFileSync(lab.privateKeyPath, "utf8"));
}

if (require.main === module) {
  const stack = process.argv[2] ?? "lab";
  writeLabStack(stack, readLabState());
  console.log(`stack ${stack}: config written to stacks/Pulumi.${stack}.yaml (host key pinned, private key secret)`);
}
