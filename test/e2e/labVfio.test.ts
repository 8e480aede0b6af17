// Boot-time isolation end to end on the lab VM's real kernel, through the real Pulumi CLI: preview
// lists the file changes, up rebinds the USB controllers to vfio-pci across a real reboot, a second
// up does nothing, bad selections fail at preview, destroy gives every file its bytes back.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Stack } from "@pulumi/pulumi/automation";
import { ConnectionSchema } from "../../providers/ssh/connection";
import { closeAllConnections, RemoteHost, withHost } from "../../providers/ssh/host";
import { labInstanceEnv, LabState, labStatePath, lockLab, readLabState } from "../../scripts/lab/labState";
import { LAB_USB_CONTROLLER_IDS, writeLabStack } from "../../scripts/labStack";
import { localStack, projectRoot, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(45 * 60_000);

const labEnv = labInstanceEnv("e2e-vfio");

const LAB_USB_CONTROLLERS = ["0000:00:1d.0", "0000:00:1d.1", "0000:00:1d.2", "0000:00:1d.7"];
const FILES = ["/etc/default/grub", "/boot/grub/grub.cfg", "/etc/initramfs-tools/modules", "/etc/modprobe.d/vfio.conf"];

let lab: LabState;
let env: Record<string, string>;
let backendDir: string;
let stack: Stack;
let releaseLab: () => void;

const labSh = (...args: string[]) =>
  execFileSync("bash", [path.join(projectRoot, "scripts/lab/lab.sh"), ...args], { stdio: ["ignore", "inherit", "inherit"], env: labEnv });
const onLab = <T>(fn: (host: RemoteHost) => Promise<T>) =>
  withHost(ConnectionSchema.parse({ host: lab.host, port: lab.port, privateKey: fs.readFileSync(lab.privateKeyPath, "utf8"), hostKey: lab.hostKey }), fn);
const readOnLab = (file: string) => onLab((host) => host.readFile(file));
const bootId = () => onLab(async (host) => (await host.run(["cat", "/proc/sys/kernel/random/boot_id"])).stdout.trim());
const driversOnLab = () =>
  onLab(async (host) => {
    const out = await host.run(["sh", "-c", 'for a in "$@"; do echo "$a $(basename "$(readlink "/sys/bus/pci/devices/$a/driver")")"; done', "sh", ...LAB_USB_CONTROLLERS]);
    return Object.fromEntries(out.stdout.trim().split("\n").map((l) => l.split(" ")));
  });

async function setVfio(selection: object) {
  await stack.setConfig("vfio", { value: JSON.stringify(selection) });
}

beforeAll(async () => {
  releaseLab = await lockLab(labStatePath(labEnv));
  labSh("reset");
  labSh("up");
  lab = readLabState(labStatePath(labEnv));
  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-lab-e2e-"));
  env = pulumiEnv(backendDir);
  writeLabStack("lab-e2e", lab, env);
  stack = await localStack(projectRoot, "lab-e2e", env);
});

afterAll(async () => {
  await closeAllConnections();
  fs.rmSync(backendDir, { recursive: true, force: true });
  fs.rmSync(path.join(projectRoot, "stacks/Pulumi.lab-e2e.yaml"), { force: true });
  labSh("down");
  releaseLab?.();
});

test("the lab's controllers go to vfio-pci after one reboot, and back after destroy", async () => {
  const original = Object.fromEntries(await Promise.all(FILES.map(async (f) => [f, await readOnLab(f)] as const)));
  const originalDrivers = await driversOnLab();
  expect(Object.values(originalDrivers)).not.toContain("vfio-pci");

  // A malformed id and the boot disk's controller fail at preview, before anything is written.
  await setVfio({ devices: ["8086:293"] });
  await expect(stack.preview()).rejects.toThrow(/"8086:293" is neither a vendor:device id nor a PCI address/);
  const disk = await onLab(async (host) => (await host.run(["sh", "-c", "basename $(readlink -f /sys/class/block/vda/device/..)"])).stdout.trim());
  await setVfio({ devices: [disk] });
  await expect(stack.preview()).rejects.toThrow(/the controller of the root filesystem/);
  for (const f of FILES) expect((await readOnLab(f))?.equals(original[f]!) ?? original[f] === undefined).toBe(true);

  await setVfio({ devices: LAB_USB_CONTROLLER_IDS });
  const preview = await stack.preview({ diff: true });
  for (const expected of ["intel_iommu=off -> intel_iommu=on", "+ iommu=pt", "/etc/modprobe.d/vfio.conf", "/etc/initramfs-tools/modules", "update-grub"]) {
    expect(preview.stdout).toContain(expected);
  }

  const bootBefore = await bootId();
  const up = await stack.up({ onOutput: (line) => process.stdout.write(line) });
  expect(up.summary.result).toBe("succeeded");
  const bootAfter = await bootId();
  expect(bootAfter).not.toBe(bootBefore);
  const cmdline = (await readOnLab("/proc/cmdline"))!.toString();
  expect(cmdline).toContain("intel_iommu=on");
  expect(cmdline).toContain("iommu=pt");
  expect(cmdline).not.toContain("intel_iommu=off");
  expect(Object.values(await driversOnLab())).toEqual(["vfio-pci", "vfio-pci", "vfio-pci", "vfio-pci"]);
  expect(up.outputs.drivers.value).toEqual(Object.fromEntries(LAB_USB_CONTROLLERS.map((a) => [a, "vfio-pci"])));
  expect(up.outputs.iommuGroups.value).toHaveLength(1); // the four controllers share one group

  const again = await stack.up();
  expect(Object.keys(again.summary.resourceChanges ?? {})).toEqual(["same"]);
  expect(await bootId()).toBe(bootAfter);

  // With the IOMMU on, half of the controllers' group is refused at preview.
  await setVfio({ devices: ["8086:2934", "8086:2935"] });
  await expect(stack.preview()).rejects.toThrow(/IOMMU group \d+ is only partly selected/);
  await setVfio({ devices: LAB_USB_CONTROLLER_IDS });

  const destroy = await stack.destroy();
  expect(destroy.summary.result).toBe("succeeded");
  for (const f of ["/etc/default/grub", "/etc/initramfs-tools/modules", "/etc/modprobe.d/vfio.conf"]) {
    const now = await readOnLab(f);
    expect(now === undefined ? original[f] === undefined : now.equals(original[f]!)).toBe(true);
  }

  await onLab((host) => host.run(["systemd-run", "--on-active=1", "systemctl", "reboot"]));
  await closeAllConnections();
  for (let i = 0; i < 100 && (await bootId().catch(() => bootAfter)) === bootAfter; i++) {
    await new Promise((r) => setTimeout(r, 3_000));
    await closeAllConnections();
  }
  expect(await driversOnLab()).toEqual(originalDrivers);
  expect((await readOnLab("/proc/cmdline"))!.toString()).toContain("intel_iommu=off");
});
