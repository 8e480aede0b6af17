// The boot-isolation proof on the lab flavours other than GRUB + initramfs-tools (which labVfio
// proves): UEFI + systemd-boot + dracut, and BIOS + extlinux + initramfs-tools. Each flavour boots
// its own lab instance and runs the boot half of the lab stack through the real Pulumi CLI:
// preview names the backend and every change, one `up` reboots once into a kernel command line with
// the args and the four USB controllers on vfio-pci, a second `up` changes nothing, and destroy
// gives every source file its bytes back. Neither loader has a one-shot the trial boot uses, so the
// change is written and booted directly (the stack's trialBoot stays on and says so).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Stack } from "@pulumi/pulumi/automation";
import { ConnectionSchema } from "../../providers/ssh/connection";
import { closeAllConnections, RemoteHost, sha256Hex, withHost } from "../../providers/ssh/host";
import { LabFlavor, labInstanceEnv, LabState, labStatePath, lockLab, readLabState } from "../../scripts/lab/labState";
import { LAB_USB_CONTROLLER_IDS, writeLabStack } from "../../scripts/labStack";
import { runCommand } from "../testhost/command";
import { StageTimes } from "./labSuite";
import { localStack, projectRoot, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(40 * 60_000);

const LAB_USB_CONTROLLERS = ["0000:00:1d.0", "0000:00:1d.1", "0000:00:1d.2", "0000:00:1d.7"];

interface Flavour {
  readonly flavor: LabFlavor;
  /** Shell code printing, one per line, every file the stack may write (existing or not). */
  readonly sources: string;
  /** What preview must name. */
  readonly preview: readonly string[];
  /** Shell code listing the image the next boot reads, for the modules and modprobe.d. */
  readonly listing: string;
}

const FLAVOURS: readonly Flavour[] = [
  {
    flavor: "sdboot-dracut",
    sources: "echo /etc/kernel/cmdline; ls /boot/efi/loader/entries/*.conf; echo /etc/dracut.conf.d/90-vfio-host.conf; echo /etc/modprobe.d/vfio.conf",
    preview: [
      "backend systemd-boot",
      "/etc/kernel/cmdline: intel_iommu=off -> intel_iommu=on",
      "/boot/efi/loader/entries/",
      "/etc/dracut.conf.d/90-vfio-host.conf: create with force_drivers",
      "kernel-install add",
      "/etc/modprobe.d/vfio.conf",
    ],
    // The copy in the entry is what systemd-boot loads (Debian's kernel-install keeps the name initrd.img-<release>).
    listing: 'lsinitrd /boot/efi/$(cat /etc/machine-id)/$(uname -r)/initrd*',
  },
  {
    flavor: "extlinux",
    sources: "echo /boot/extlinux/extlinux.conf; echo /etc/initramfs-tools/modules; echo /etc/modprobe.d/vfio.conf",
    preview: ["backend syslinux", "/boot/extlinux/extlinux.conf: LABEL", "intel_iommu=off -> intel_iommu=on", "/etc/initramfs-tools/modules", "update-initramfs", "/etc/modprobe.d/vfio.conf"],
    listing: 'lsinitramfs "/boot/initrd.img-$(uname -r)"',
  },
];

/** One flavour's proof, on its own lab instance and stack; the flavours run side by side, sharing the two cores. */
async function proveFlavour({ flavor, sources, preview, listing }: Flavour): Promise<void> {
  const STACK = `lab-e2e-${flavor}`;
  const labEnv = labInstanceEnv("e2e-flavour", flavor);
  const timings = new StageTimes();
  const timed = <T>(what: string, fn: () => Promise<T>) => timings.timed(what, fn);
  // Not execFileSync: the flavours run side by side, and a synchronous call would hold the other's run still.
  const labSh = (...args: string[]) => runCommand("bash", [path.join(projectRoot, "scripts/lab/lab.sh"), ...args], { stderr: "inherit", env: labEnv });
  const releaseLab = await lockLab(labStatePath(labEnv));
  const backendDir = fs.mkdtempSync(path.join(os.tmpdir(), `vfio-host-${STACK}-`));
  let lab: LabState | undefined;
  let output = "";
  try {
    await timed("lab reset + up", async () => {
      await labSh("reset");
      await labSh("up");
    });
    const running = readLabState(labStatePath(labEnv));
    lab = running;
    expect(running.flavor).toBe(flavor);
    const onLab = <T>(fn: (host: RemoteHost) => Promise<T>) =>
      withHost(ConnectionSchema.parse({ host: running.host, port: running.port, privateKey: fs.readFileSync(running.privateKeyPath, "utf8"), hostKey: running.hostKey }), fn);
    const sh = (script: string, ...args: string[]) => onLab(async (host) => (await host.run(["sh", "-c", script, "sh", ...args])).stdout);
    const bootId = () => sh("cat /proc/sys/kernel/random/boot_id").then((out) => out.trim());
    const drivers = () =>
      sh('for a in "$@"; do echo "$(basename "$(readlink "/sys/bus/pci/devices/$a/driver")")"; done', ...LAB_USB_CONTROLLERS).then((out) => out.trim().split("\n"));
    /** sha256 (or "absent") of every source file the stack may write. */
    const sourceBytes = async () => {
      const files = (await sh(sources)).trim().split("\n");
      return Object.fromEntries(await Promise.all(files.map(async (f) => [f, await onLab((h) => h.readFile(f)).then((b) => (b ? sha256Hex(b) : "absent"))] as const)));
    };

    const env = pulumiEnv(backendDir);
    fs.rmSync(path.join(projectRoot, `stacks/Pulumi.${STACK}.yaml`), { force: true });
    writeLabStack(STACK, running, env, { libvirt: false });
    const stack: Stack = await localStack(projectRoot, STACK, env);
    // The CLI's output, kept per flavour and printed at the end: the two runs' progress would interleave.
    const log = (chunk: string) => (output += chunk);

    const original = await sourceBytes();
    expect(await drivers()).not.toContain("vfio-pci");
    expect(await sh("cat /proc/cmdline")).toContain("intel_iommu=off");

    const diff = await timed("preview", () => stack.preview({ diff: true }));
    for (const expected of preview) expect(diff.stdout).toContain(expected);
    expect(await sourceBytes()).toEqual(original);

    const bootBefore = await bootId();
    const result = await timed("up: write, rebuild, reboot, verify", () => stack.up({ onOutput: log }));
    expect(result.summary.result).toBe("succeeded");
    const booted = await bootId();
    expect(booted).not.toBe(bootBefore);
    expect(result.outputs.verifiedBootId.value).toBe(booted);
    const line = await sh("cat /proc/cmdline");
    expect(line).toMatch(/(^| )intel_iommu=on( |$)/);
    expect(line).toMatch(/(^| )iommu=pt( |$)/);
    expect(line).not.toContain("intel_iommu=off");
    expect(await drivers()).toEqual(["vfio-pci", "vfio-pci", "vfio-pci", "vfio-pci"]);
    expect(await sh(`${listing} | grep -cE 'vfio-pci\\.ko|modprobe\\.d/vfio\\.conf'`)).toMatch(/^[2-9]/);
    expect((await onLab((h) => h.readFile("/etc/modprobe.d/vfio.conf")))!.toString()).toContain(`options vfio-pci ids=${LAB_USB_CONTROLLER_IDS.join(",")}`);

    const again = await timed("no-op up", () => stack.up());
    expect(Object.keys(again.summary.resourceChanges ?? {})).toEqual(["same"]);
    expect(await bootId()).toBe(booted);

    const destroy = await timed("destroy", () => stack.destroy({ onOutput: log }));
    expect(destroy.summary.result).toBe("succeeded");
    expect(await sourceBytes()).toEqual(original);
  } finally {
    console.log(`${flavor} lab, pulumi up and destroy:\n${output}`);
    timings.print(`${flavor} lab timings (lab: ${lab?.accel})`);
    fs.rmSync(backendDir, { recursive: true, force: true });
    fs.rmSync(path.join(projectRoot, `stacks/Pulumi.${STACK}.yaml`), { force: true });
    await labSh("down");
    releaseLab();
  }
}

afterAll(() => closeAllConnections());

test.concurrent.each(FLAVOURS)(
  "the $flavor lab: preview names the backend and every change; one up reboots once onto vfio-pci; a second up changes nothing; destroy gives every source file its bytes back",
  proveFlavour,
);
