// Writes the `lab` stack's config (stacks/Pulumi.lab.yaml) from the running lab VM's lab.json: the
// connection with the guest's host key pinned, the private key as a secret, the lab's four ICH9 USB
// controllers (they share one IOMMU group like the reference host's group 4) for vfio-pci, and the
// libvirt half: packages, the `default` pool, the guest image the lab build made, and a guest that
// owns one of the controllers.
//
//   node dist/scripts/labStack.js [stack]        (npm run lab:stack)
import * as fs from "fs";
import * as path from "path";
import { LabState, readLabState } from "./lab/labState";
import { pulumiCli, pulumiEnv } from "./pulumiEnv";

/** The lab's USB controllers, by id (their group is only known once the IOMMU is on). */
export const LAB_USB_CONTROLLER_IDS = ["8086:2934", "8086:2935", "8086:2936", "8086:293a"];

/** The controller the lab guest owns (slot 1d function 0, 8086:2934). */
export const LAB_GUEST_HOSTDEV = "0000:00:1d.0";
export const LAB_GUEST = "lab-guest";
/** The guest image build-image.sh put on the lab, and where it recorded its sha256. */
const LAB_GUEST_IMAGE = "/srv/vfio-host/lab-guest.qcow2.xz";
const labGuestSha256 = (lab: LabState) => fs.readFileSync(path.join(path.dirname(lab.image), "lab-guest.sha256"), "utf8").trim();

/** The libvirt half of the lab stack, as the reference host's, at the lab's scale. */
export function labLibvirt(lab: LabState) {
  return {
    // xz-utils: the volume import decompresses the image on the host.
    packages: { packages: ["libvirt-daemon-system", "qemu-system-x86", "qemu-utils", "ovmf", "xz-utils"], services: ["libvirtd"], modules: ["tun"] },
    pools: [{ name: "default", path: "/var/lib/libvirt/images" }],
    volumes: [{ pool: "default", name: "lab-guest.qcow2", source: { hostPath: LAB_GUEST_IMAGE }, sha256: labGuestSha256(lab), format: "qcow2" }],
    domains: {
      guest: {
        name: LAB_GUEST,
        description: "vfio-host lab guest",
        vcpus: 1,
        memoryMiB: 128,
        // The lab's libvirt has no KVM (build-image.sh): TCG has no host CPU to pass through.
        cpu: "host-model",
        boot: "uefi",
        disks: [{ pool: "default", volume: "lab-guest.qcow2" }],
        hostdevs: [LAB_GUEST_HOSTDEV],
        // The lab guest (a halt loop, build-image.sh) does not answer the ACPI power button: destroy forces it off after this.
        shutdownTimeoutSeconds: 15,
      },
    },
  };
}

/** `libvirt: false` writes the boot half only (the flavour labs have no libvirt). */
export function writeLabStack(stack: string, lab: LabState, env: Record<string, string> = pulumiEnv(), options: { libvirt?: boolean } = {}): void {
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
    ...(options.libvirt === false ? [] : ["--plaintext", `libvirt=${JSON.stringify(labLibvirt(lab))}`]),
  ]);
  run(["config", "set", "--secret", "sshPrivateKey"], fs.readFileSync(lab.privateKeyPath, "utf8"));
}

if (require.main === module) {
  const stack = process.argv[2] ?? "lab";
  writeLabStack(stack, readLabState());
  console.log(`stack ${stack}: config written to stacks/Pulumi.${stack}.yaml (host key pinned, private key secret)`);
}
