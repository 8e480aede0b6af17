// A test host dressed as the reference Alpine host (Alpine 3.16, the 5.15 lts kernel, extlinux,
// mkinitfs, busybox modprobe, apk and OpenRC, a Q45/ICH10 desktop whose four USB controllers share
// IOMMU group 4), so the Alpine path can run end to end here. Alpine's own tools cannot run on this
// machine: the scripts in this directory stand in for them, each named a STAND-IN in its first
// comment line. As the installer left it, the host has no libvirt; installLibvirt adds one.
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
const STAND_INS = ["update-extlinux", "mkinitfs", "modprobe", "modinfo", "apk", "rc-service"] as const;
/** What the reference stack installs (vfio-host:libvirt.packages). */
export const LIBVIRT_PACKAGES = ["libvirt-daemon", "qemu-img", "qemu-system-x86_64", "qemu-modules", "ovmf", "curl", "xz"] as const;
/** Where the reference host's / lives: sda3 on the AHCI controller (IOMMU group 7). */
const ROOT_DISK_CONTROLLER = "0000:00:1f.2";
/** The 82567LM (IOMMU group 2), which carries the SSH session. */
const SSH_NIC = "0000:00:19.0";

const unitFixture = (name: string) => fs.readFileSync(path.join(__dirname, "../unit", name), "utf8");
// The lts kernel's tun too, which the libvirt half loads.
const modulesDep = `${unitFixture("initramfsModules/fixtures/alpine-5.15-modules.dep")}kernel/drivers/net/tun.ko:\n`;

/** apk's database (P: is the name) holding the packages of a fresh Alpine 3.16 install of this host. */
const apkDatabase = (names: readonly string[]) => names.map((name) => `P:${name}\n`).join("\n");
const ALPINE_BASE_PACKAGES = ["alpine-base", "busybox", "openrc", "apk-tools", "linux-lts", "mkinitfs", "syslinux", "openssh", "pciutils"];

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
  "/lib/apk/db/installed": apkDatabase(ALPINE_BASE_PACKAGES),
  // Alpine's stock /etc/modules, which OpenRC's `modules` service (boot runlevel) loads.
  "/etc/modules": "af_packet\nipv6\n",
  "/etc/init.d/modules": "#!/sbin/openrc-run\n",
  "/etc/init.d/sshd": "#!/sbin/openrc-run\n",
};

/** Runlevel entries of a fresh install: links to their /etc/init.d scripts, as rc-update makes them. */
const RUNLEVELS = { boot: ["modules"], default: ["sshd"] };

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
  // apt-get would make HostPackages take the host for Debian.
  for (const debianOnly of ["/etc/default/grub", "/usr/sbin/update-initramfs", "/usr/bin/apt-get"]) fs.rmSync(t.inTree(debianOnly), { force: true });
  for (const name of STAND_INS) installStandIn(t, name);
  for (const [file, content] of Object.entries({ ...referenceAlpineFiles, ...dummyModules() })) t.write(file, content);
  for (const [runlevel, services] of Object.entries(RUNLEVELS)) {
    fs.mkdirSync(t.inTree(`/etc/runlevels/${runlevel}`), { recursive: true });
    for (const s of services) fs.symlinkSync(`/etc/init.d/${s}`, t.inTree(`/etc/runlevels/${runlevel}/${s}`));
  }

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

const installStandIn = (t: TreeWriter, name: string) => t.write(`/usr/local/sbin/${name}`, fs.readFileSync(path.join(__dirname, name)), 0o755);

/**
 * The reference host once `apk add` of the stack's packages is done and libvirtd started by hand:
 * the packages in apk's database, libvirt's OpenRC scripts and images directory, a stand-in virsh
 * answering for a libvirtd with nothing defined, the image's download and decompression commands
 * (curl and xz, stand-ins too), and libvirtd started in OpenRC's state dir (the host's /run, a
 * tmpfs of its own mount namespace). Nothing is in a runlevel yet.
 */
export async function installLibvirt(testHost: TestHost): Promise<void> {
  const t = new TreeWriter(testHost.rootfs);
  installStandIn(t, "virsh");
  for (const command of ["curl", "xz"]) t.write(`/usr/local/sbin/${command}`, fs.readFileSync(path.join(__dirname, "packagedCommand")), 0o755);
  fs.appendFileSync(t.inTree("/lib/apk/db/installed"), `\n${apkDatabase(LIBVIRT_PACKAGES)}`);
  for (const service of ["libvirtd", "libvirt-guests"]) t.write(`/etc/init.d/${service}`, "#!/sbin/openrc-run\n", 0o755);
  fs.mkdirSync(t.inTree("/var/lib/libvirt/images"), { recursive: true });
  const started = path.join(testHost.rootfs, "run/openrc/started");
  await runCommand("nsenter", ["--target", String(testHost.sshdPid), "--mount", "--", "sh", "-c", 'mkdir -p "$1" && ln -s /etc/init.d/libvirtd "$1/libvirtd"', "sh", started]);
}

/**
 * A stack of the project's program, run from `workDir` (a fixture directory with its own
 * Pulumi.yaml, so test stacks stay out of stacks/), whose config is the reference host's stack file
 * pointed at the test host. By default it is the boot half, whose files a test host can take: the
 * reboot and its proof are left out (a test host cannot reboot), and so is the libvirt half (it has
 * no libvirt to install, no QEMU to run). `whole` keeps both, for a preview.
 */
export async function referenceStack(
  testHost: TestHost,
  workDir: string,
  name: string,
  env: Record<string, string>,
  options: { whole?: boolean } = {},
): Promise<Stack> {
  fs.copyFileSync(path.join(projectRoot, "stacks/Pulumi.alpine-homeassistant.yaml"), path.join(workDir, `Pulumi.${name}.yaml`));
  const stack = await localStack(workDir, name, env);
  await stack.setAllConfig({
    "vfio-host:host": { value: testHost.host },
    "vfio-host:port": { value: String(testHost.port) },
    "vfio-host:hostKey": { value: testHost.hostKey },
    "vfio-host:sshPrivateKey": { value: testHost.privateKey, secret: true },
  });
  if (!options.whole) {
    await stack.setConfig("vfio-host:reboot", { value: "never" });
    await stack.removeConfig("vfio-host:libvirt");
  }
  return stack;
}

/**
 * Removes the stack files `referenceStack` wrote next to a fixture's Pulumi.yaml for the stacks
 * named `prefix`*: only the calling suite's, since suites in the other test lane may share the
 * fixture and be running (guards removing every stack file once took pulumiUp's mid-run).
 */
export function removeStackFiles(workDir: string, prefix: string): void {
  const ours = (name: string) => name.startsWith(`Pulumi.${prefix}`) && name.endsWith(".yaml");
  for (const name of fs.readdirSync(workDir).filter(ours)) fs.rmSync(path.join(workDir, name));
}
