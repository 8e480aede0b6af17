// `npm run demo`: the main job on the lab VM. Starts the lab, writes the `lab` stack's config,
// shows `pulumi preview --diff`, runs `pulumi up` (kernel arguments, vfio-pci binding, initramfs,
// one reboot, verification), then prints which devices are on vfio-pci and how to undo it all.
import { execFileSync, spawnSync } from "child_process";
import * as path from "path";
import { readLabState } from "./lab/labState";
import { writeLabStack } from "./labStack";
import { projectRoot, pulumiCli, pulumiEnv } from "./pulumiEnv";

const stack = process.env.DEMO_STACK ?? "lab";

function step(title: string): void {
  console.log(`\n==> ${title}`);
}

/** Runs the CLI with its output on this terminal, so its progress shows as it happens. */
function pulumiLive(env: Record<string, string>, args: string[]): void {
  const result = spawnSync("pulumi", [...args, "--stack", stack], { cwd: projectRoot, env: { ...process.env, ...env }, stdio: "inherit" });
  if (result.status !== 0) throw new Error(`pulumi ${args.join(" ")} failed (exit ${result.status})`);
}

function main(): void {
  step("Lab VM (built once and cached; boots in about 30 s under TCG)");
  execFileSync("bash", [path.join(projectRoot, "scripts/lab/lab.sh"), "up"], { stdio: "inherit" });
  const lab = readLabState();
  const env = pulumiEnv();

  step(`Stack "${stack}": connection to ${lab.host}:${lab.port}, host key pinned, private key stored as a secret`);
  writeLabStack(stack, lab, env);

  step("pulumi preview --diff: what will change on the host");
  pulumiLive(env, ["preview", "--diff"]);

  step("pulumi up: stage, boot the change once as a trial, verify, make it permanent (several minutes under TCG)");
  pulumiLive(env, ["up", "--yes", "--skip-preview"]);

  step("Verification");
  const outputs = JSON.parse(pulumiCli(env, ["stack", "output", "--json", "--stack", stack])) as {
    drivers?: Record<string, string>;
    iommuGroups?: number[];
    verifiedBootId?: string;
  };
  for (const [address, driver] of Object.entries(outputs.drivers ?? {})) console.log(`  ${address}  driver in use: ${driver}`);
  console.log(`  IOMMU group(s): ${(outputs.iommuGroups ?? []).join(", ")}; verified on boot ${outputs.verifiedBootId}`);
  console.log(
    `\nDone. To give the lab back: npm run pulumi -- destroy --stack ${stack}  (then reboot it: npm run lab -- ssh -- systemctl reboot)` +
      "\nTo stop the VM: npm run lab -- down",
  );
}

main();
