// `npm run demo`: the main job on the lab VM, from a pristine lab to a running guest that owns a USB
// controller. Starts the lab, writes the `lab` stack's config, shows `pulumi preview --diff`, runs
// the one `pulumi up` (kernel arguments, vfio-pci binding, initramfs, one trial reboot and its
// verification, then libvirt: packages, pool, the guest image, the guest), then prints the proof:
// each controller's driver and IOMMU group, the guest's hostdev, its QEMU holding the VFIO group,
// and the guest machine's PCI bus; then how to undo it all.
import { execFileSync, spawnSync } from "child_process";
import * as path from "path";
import { readLabState } from "./lab/labState";
import { LAB_GUEST, LAB_GUEST_HOSTDEV, writeLabStack } from "./labStack";
import { projectRoot, pulumiCli, pulumiEnv } from "./pulumiEnv";

const stack = process.env.DEMO_STACK ?? "lab";
const labSh = path.join(projectRoot, "scripts/lab/lab.sh");

function step(title: string): void {
  console.log(`\n==> ${title}`);
}

/** Runs the CLI with its output on this terminal, so its progress shows as it happens. */
function pulumiLive(env: Record<string, string>, args: string[]): void {
  const result = spawnSync("pulumi", [...args, "--stack", stack], { cwd: projectRoot, env: { ...process.env, ...env }, stdio: "inherit" });
  if (result.status !== 0) throw new Error(`pulumi ${args.join(" ")} failed (exit ${result.status})`);
}

/** A read-only command on the lab, its output. */
const onLab = (script: string): string => execFileSync("bash", [labSh, "ssh", "--", script], { encoding: "utf8" });

/** The lines four spaces in, their common indentation taken off (dumpxml indents its fragment). */
function indent(text: string): string {
  const lines = text.replace(/^\n+|\s+$/g, "").split("\n");
  const common = Math.min(...lines.filter((l) => l.trim() !== "").map((l) => l.length - l.trimStart().length));
  return lines.map((l) => `    ${l.slice(common)}`).join("\n");
}

function main(): void {
  step("Lab VM (built once and cached; boots in about 30 s under TCG)");
  execFileSync("bash", [labSh, "up"], { stdio: "inherit" });
  const lab = readLabState();
  const env = pulumiEnv();

  step(`Stack "${stack}": connection to ${lab.host}:${lab.port}, host key pinned, private key stored as a secret`);
  writeLabStack(stack, lab, env);

  step("pulumi preview --diff: what will change on the host, the boot half and the libvirt half");
  pulumiLive(env, ["preview", "--diff"]);

  step("pulumi up: stage, boot the change once as a trial, verify, make it permanent, then the guest (several minutes under TCG)");
  pulumiLive(env, ["up", "--yes", "--skip-preview"]);

  step("Proof, on the host");
  const outputs = JSON.parse(pulumiCli(env, ["stack", "output", "--json", "--stack", stack])) as {
    drivers?: Record<string, string>;
    iommuGroups?: number[];
    verifiedBootId?: string;
  };
  for (const [address, driver] of Object.entries(outputs.drivers ?? {})) console.log(`  ${address}  driver in use: ${driver}`);
  console.log(`  IOMMU group(s): ${(outputs.iommuGroups ?? []).join(", ")}; verified on boot ${outputs.verifiedBootId}`);

  step(`Proof, the guest ${LAB_GUEST}`);
  console.log(`  state: ${onLab(`virsh domstate ${LAB_GUEST}`).trim()}`);
  console.log(`  its hostdev (virsh dumpxml ${LAB_GUEST}):`);
  console.log(indent(onLab(`virsh dumpxml ${LAB_GUEST} | sed -n '/<hostdev/,/<\\/hostdev>/p'`)));
  const group = path.basename(onLab(`readlink /sys/bus/pci/devices/${LAB_GUEST_HOSTDEV}/iommu_group`).trim());
  console.log(`  its QEMU holds the controller's VFIO group ${group}:`);
  console.log(indent(onLab(`pid=$(pgrep -f 'guest=${LAB_GUEST},' | head -n1); for f in /proc/$pid/fd/*; do t=$(readlink "$f"); case $t in /dev/vfio/*) echo "qemu pid $pid: $t";; esac; done | sort -u`)));
  const id = onLab(`d=/sys/bus/pci/devices/${LAB_GUEST_HOSTDEV}; echo "$(cut -c3- $d/vendor):$(cut -c3- $d/device)"`).trim();
  console.log(`  the guest machine's PCI bus, as QEMU built it (virsh qemu-monitor-command --hmp 'info pci'): the controller, ${id}, is on it`);
  // Right after the start the monitor answered empty once: ask again for a while.
  const bus = onLab(`for i in $(seq 30); do virsh qemu-monitor-command ${LAB_GUEST} --hmp 'info pci' | grep -B1 -A1 'PCI device ${id}' && exit; sleep 2; done; echo "(QEMU's monitor did not list it within 60 s)"`);
  console.log(indent(bus));
  console.log(`  (the guest's firmware lists its PCI devices on its console: npm run lab -- ssh, then virsh console ${LAB_GUEST} and type pci)`);

  console.log(
    `\nDone. To give the lab back: npm run pulumi -- destroy --stack ${stack}  (removes the guest, its volume and the pool, restores the boot files;` +
      " then reboot it: npm run lab -- ssh -- systemctl reboot)" +
      "\nTo stop the VM: npm run lab -- down",
  );
}

main();
