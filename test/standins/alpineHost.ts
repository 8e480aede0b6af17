// A test host dressed as the reference Alpine host (Alpine 3.16, the 5.15 lts kernel, extlinux,
// mkinitfs, busybox modprobe, a Q45/ICH10 desktop whose four USB controllers share IOMMU group 4),
// so the Alpine path can run end to end here. Alpine's own tools cannot run on this machine: the
// scripts in this directory stand in for them, each named a STAND-IN in its first comment line.
import * as fs from "node:fs";
import * as path from "node:path";
import { parseIommuGroups, parseLspci } from "../../providers/vfioBinding/hostFacts";
import type { Stack } from "@pulumi/pulumi/automation";
import { localStack, projectRoot } from "../e2e/pulumiEnv";
import { runCommand } from "../testhost/command";
import type { TestHost } from "../testhost/testHost";
import { referenceGroups, referenceLspci, referenceUsb } from "../unit/vfioBinding/fixtures";
import { installIp, TreeWriter, writePciDevices, writePciNic, writeRootPartition, writeUsbDevices } from "./fakeSysfs";

/** The reference host's kernel: its image is /boot/vmlinuz-lts, its initramfs /boot/initramfs-lts. */
export const ALPINE_KERNEL = "5.15.74-0-lts";
const STAND_INS = ["update-extlinux", "mkinitfs", "modprobe"] as const;
/** Where the reference host's / lives: sda3 on the AHCI controller (IOMMU group 7). */
const ROOT_DISK_CONTROLLER = "0000:00:1f.2";
/** The 82567LM (IOMMU group 2), which carries the SSH session. */
const SSH_NIC = "0000:00:19.0";

const unitFixture = (name: string) => fs.readFileSync(path.join(__dirname, "../unit", name), "utf8");
const modulesDep = unitFixture("initramfsModules/fixtures/alpine-5.15-modules.dep");

/** The reference host's Alpine files, as the project's unit tests know them, plus what the stand-ins read. */
export const referenceAlpineFiles: Readonly<Record<string, string>> = {
  "/etc/alpine-release": "3.16.2\n",
  "/etc/update-extlinux.conf": unitFixture("kernelCmdline/fixtures/alpine-update-extlinux.conf"),
  "/etc/mkinitfs/mkinitfs.conf": unitFixture("initramfsModules/fixtures/alpine-mkinitfs.conf"),
  // Two of the stock feature lists, cut down to what this host has: base puts /etc/modprobe.d into
  // the image (so vfio.conf reaches the early modprobe), usb the host controller drivers.
  "/etc/mkinitfs/features.d/base.files": "/etc/modprobe.d/*.conf\n",
  "/etc/mkinitfs/features.d/usb.modules": "kernel/drivers/usb/host\n",
  // update-extlinux labels a kernel by the flavor whose kernel.release names it.
  "/usr/share/kernel/lts/kernel.release": `${ALPINE_KERNEL}\n`,
  [`/lib/modules/${ALPINE_KERNEL}/modules.dep`]: modulesDep,
  // Alpine's lts builds the 8250 serial driver in; VFIO and the USB host drivers are modules.
  [`/lib/modules/${ALPINE_KERNEL}/modules.builtin`]: "kernel/drivers/tty/serial/8250/8250.ko\n",
  "/boot/vmlinuz-lts": "",
};

/** Every module file modules.dep names, as a line of text: the stand-in mkinitfs only copies them. */
function dummyModules(): Record<string, string> {
  const paths = new Set(modulesDep.split(/[\s:]+/).filter((p) => p.endsWith(".ko")));
  return Object.fromEntries([...paths].map((p) => [`/lib/modules/${ALPINE_KERNEL}/${p}`, `stand-in module ${p}\n`]));
}

/**
 * Writes the reference Alpine host into the test host's tree: the stand-ins in /usr/local/sbin
 * (first on root's PATH), Alpine's files, a kernel with VFIO modules, and a sysfs of the reference
 * host's PCI devices (lspci fixture), IOMMU groups and USB buses, / on sda3 behind the AHCI
 * controller and SSH arriving on the 82567LM. Takes out what would make the resources pick the
 * Debian path (/etc/default/grub, update-initramfs), then builds the first initramfs and
 * extlinux.conf with the stand-ins, as the Alpine installer leaves them.
 */
export async function prepareAlpineHost(testHost: TestHost): Promise<void> {
  const t = new TreeWriter(testHost.rootfs);
  for (const debianOnly of ["/etc/default/grub", "/usr/sbin/update-initramfs"]) fs.rmSync(t.inTree(debianOnly), { force: true });
  for (const name of STAND_INS) t.write(`/usr/local/sbin/${name}`, fs.readFileSync(path.join(__dirname, name)), 0o755);
  for (const [file, content] of Object.entries({ ...referenceAlpineFiles, ...dummyModules() })) t.write(file, content);

  writePciDevices(t, parseLspci(referenceLspci), parseIommuGroups(referenceGroups));
  writeUsbDevices(t, referenceUsb);
  // The dev_t of the host's / (an overlay), as `mountpoint -d /` prints it there.
  const rootDev = (await runCommand("mountpoint", ["-d", testHost.rootfs])).trim();
  writeRootPartition(t, rootDev, ROOT_DISK_CONTROLLER, "sda", "sda3");
  // The test host's interface is eth0 (testHost.ts); `ip route get` finds it (this machine's `ip`,
  // which starting a test host needs anyway).
  writePciNic(t, "eth0", SSH_NIC);
  installIp(t);

  await runCommand("chroot", [testHost.rootfs, "sh", "-c", `mkinitfs ${ALPINE_KERNEL} >/dev/null && update-extlinux`]);
}

/**
 * A stack of the project's program, run from `workDir` (a fixture directory with its own
 * Pulumi.yaml, so test stacks stay out of stacks/), whose config is the reference host's stack file
 * pointed at the test host. Everything is written; the reboot and its proof are left out (a test
 * host cannot reboot).
 */
export async function referenceStack(testHost: TestHost, workDir: string, name: string, env: Record<string, string>): Promise<Stack> {
  fs.copyFileSync(path.join(projectRoot, "stacks/Pulumi.alpine-homeassistant.yaml"), path.join(workDir, `Pulumi.${name}.yaml`));
  const stack = await localStack(workDir, name, env);
  await stack.setAllConfig({
    "vfio-host:host": { value: testHost.host },
    "vfio-host:port": { value: String(testHost.port) },
    "vfio-host:hostKey": { value: testHost.hostKey },
    "vfio-host:sshPrivateKey": { value: testHost.privateKey, secret: true },
    "vfio-host:reboot": { value: "never" },
  });
  return stack;
}

/** Removes the stack files `referenceStack` wrote next to a fixture's Pulumi.yaml. */
export function removeStackFiles(workDir: string): void {
  for (const name of fs.readdirSync(workDir).filter((n) => /^Pulumi\..+\.yaml$/.test(n))) fs.rmSync(path.join(workDir, name));
}
