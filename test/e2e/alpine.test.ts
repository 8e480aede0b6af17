// The Alpine path end to end, as far as it can run on this machine: the project's program
// (stacks/index.ts) with the reference host's stack file (stacks/Pulumi.alpine-homeassistant.yaml),
// through the real Pulumi CLI, against a test host dressed as the reference Alpine host
// (test/standins/alpineHost.ts). Alpine's update-extlinux, mkinitfs and busybox modprobe are
// stand-ins there; the files the resources write, the order they run the tools in and the checks
// they make of the tools' output are real. Not proven here: Alpine's own tools, its initramfs at
// boot, and the reboot (reboot: never, a test host cannot reboot).
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Stack } from "@pulumi/pulumi/automation";
import { ALPINE_KERNEL, prepareAlpineHost, referenceAlpineFiles, referenceStack, removeStackFiles } from "../standins/alpineHost";
import { readInitramfs } from "../standins/initramfsImage";
import { startTestHost, TestHost } from "../testhost/testHost";
import { alpineExtlinuxConfWithVfio } from "../unit/kernelCmdline/fixtures";
import { projectRoot, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(15 * 60_000);

const workDir = path.join(projectRoot, "test/e2e/fixtures/alpine");
const modules = `lib/modules/${ALPINE_KERNEL}`;

let testHost: TestHost;
let backendDir: string;
let env: Record<string, string>;
/** The tree as prepareAlpineHost left it, before any stack ran. */
let prepared: Map<string, string>;

beforeAll(async () => {
  testHost = await startTestHost();
  await prepareAlpineHost(testHost);
  prepared = treeChanges();
  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-alpine-e2e-"));
  env = pulumiEnv(backendDir);
}, 15 * 60_000);

afterAll(async () => {
  await testHost?.stop();
  if (backendDir) fs.rmSync(backendDir, { recursive: true, force: true });
  removeStackFiles(workDir);
});

const onHost = (rel: string) => path.join(testHost.rootfs, rel);
const readOnHost = (rel: string) => fs.readFileSync(onHost(rel), "utf8");
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/**
 * Every path where the test host's tree differs from the pristine tree beneath it, with what it is
 * now: the overlay's upper layer, less copied-up directories and files whose bytes and mode are the
 * pristine ones.
 */
function treeChanges(): Map<string, string> {
  const changes = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(testHost.upperDir, rel))) {
      const p = path.join(rel, name);
      const upper = fs.lstatSync(path.join(testHost.upperDir, p));
      const pristinePath = path.join(testHost.pristineRootfs, p);
      const pristine = fs.existsSync(pristinePath) ? fs.lstatSync(pristinePath) : undefined;
      if (upper.isDirectory()) {
        if (!pristine?.isDirectory()) changes.set(p, "directory");
        walk(p);
      } else if (upper.isCharacterDevice()) {
        changes.set(p, "deleted"); // overlayfs's whiteout
      } else if (upper.isSymbolicLink()) {
        changes.set(p, `-> ${fs.readlinkSync(path.join(testHost.upperDir, p))}`);
      } else {
        const data = fs.readFileSync(path.join(testHost.upperDir, p));
        const same = pristine?.isFile() && pristine.mode === upper.mode && fs.readFileSync(pristinePath).equals(data);
        if (!same) changes.set(p, `${(upper.mode & 0o7777).toString(8)} ${sha256(data)}`);
      }
    }
  };
  walk("");
  return changes;
}

/** The reference host's /etc/update-extlinux.conf after the steps done by hand on it. */
const updateExtlinuxConfWithVfio = referenceAlpineFiles["/etc/update-extlinux.conf"]
  .replace('\ndefault_kernel_opts="quiet rootfstype=ext4"\n', '\ndefault_kernel_opts="quiet rootfstype=ext4 intel_iommu=on iommu=pt"\n')
  .replace("\nmodules=sd-mod,usb-storage,ext4\n", "\nmodules=sd-mod,usb-storage,ext4,vfio,vfio-pci,vfio_iommu_type1,vfio_virqfd\n");

const vfioConf = [
  "# Managed by vfio-host (Pulumi VfioBinding): binds the selected PCI devices to vfio-pci at boot.",
  "# Changes here are overwritten on the next `pulumi up`.",
  "options vfio-pci ids=8086:3a67,8086:3a68,8086:3a69,8086:3a6c",
  "options vfio_iommu_type1 allow_unsafe_interrupts=1",
  // The drivers the fake sysfs says hold the controllers: ehci-pci (1a.7) and uhci_hcd (1a.0-1a.2).
  "softdep ehci_pci pre: vfio-pci",
  "softdep uhci_hcd pre: vfio-pci",
  "",
].join("\n");

const vfioFeature = [
  "# Managed by vfio-host (Pulumi InitramfsModules); changes here are overwritten.",
  '# mkinitfs reads this file only while features= in /etc/mkinitfs/mkinitfs.conf lists "vfio".',
  "kernel/drivers/vfio/vfio.ko*",
  "kernel/drivers/vfio/pci/vfio-pci.ko*",
  "kernel/drivers/vfio/vfio_iommu_type1.ko*",
  "kernel/drivers/vfio/vfio_virqfd.ko*",
  "",
].join("\n");

/** The preview's failure, or undefined when it succeeded. */
const previewFailure = (stack: Stack) =>
  stack.preview({ diff: true }).then(
    () => undefined,
    (err: Error) => err.message,
  );

test("preview refuses half of group 4, the root disk's controller, the SSH NIC and a malformed id, and leaves the tree alone", async () => {
  const stack = await referenceStack(testHost, workDir, "alpine-refusals", env);
  const refusals: [string, object, string[]][] = [
    [
      "two of the four controllers",
      { devices: ["8086:3a67", "8086:3a68"], allowUnsafeInterrupts: true },
      [
        "IOMMU group 4 is only partly selected: 0000:00:1a.2 (8086:3a69) and 0000:00:1a.7 (8086:3a6c) are not in `devices`; " +
          "add them, or acknowledge them in `acknowledgeGroupMembers`",
      ],
    ],
    [
      "the SATA controller of the root disk",
      { devices: ["8086:3a02"] },
      [
        '`devices` entry "8086:3a02" selects 0000:00:1f.2 (8086:3a02), the controller of the root filesystem; bound to vfio-pci ' +
          "at boot, the host would lose its root filesystem. Remove it from the selection, or add \"0000:00:1f.2\" to `allowHostCritical`",
        "IOMMU group 7 is only partly selected: 0000:00:1f.0 (8086:3a14) and 0000:00:1f.3 (8086:3a60) are not in `devices`",
      ],
    ],
    [
      "the NIC of the SSH session",
      { devices: ["8086:10de"] },
      [
        '`devices` entry "8086:10de" selects 0000:00:19.0 (8086:10de), the NIC carrying this SSH session; bound to vfio-pci ' +
          "at boot, the host would lose this SSH connection",
      ],
    ],
    [
      "a malformed id",
      { devices: ["8086:3a6"] },
      ['devices: "8086:3a6" is neither a vendor:device id nor a PCI address; write an id like "8086:3a67" or an address like "0000:00:1a.0"'],
    ],
  ];
  for (const [what, vfio, messages] of refusals) {
    await stack.setConfig("vfio-host:vfio", { value: JSON.stringify(vfio) });
    const failure = await previewFailure(stack);
    expect({ what, failed: failure !== undefined }).toEqual({ what, failed: true });
    for (const message of messages) expect(failure).toContain(message);
    expect(treeChanges()).toEqual(prepared);
  }
  await stack.workspace.removeStack("alpine-refusals");
});

test("preview, up, up again and destroy: the reference steps, file by file, then the host given back", async () => {
  const stack = await referenceStack(testHost, workDir, "alpine-reference", env);
  const pristineModprobeD = fs.readdirSync(path.join(testHost.pristineRootfs, "etc/modprobe.d"));
  const extlinuxBefore = readOnHost("boot/extlinux.conf");
  // By what it holds: cpio headers carry mtimes, so no two mkinitfs runs write the same bytes.
  const imageMembers = () => readInitramfs(fs.readFileSync(onHost("boot/initramfs-lts"))).map((m) => `${m.name} ${m.mode.toString(8)} ${sha256(m.data)}`);
  const imageBefore = imageMembers();

  const preview = await stack.preview({ diff: true });
  console.log(`preview --diff of the reference host:\n${preview.stdout}`);
  // The stack, the VfioHost component, KernelCmdline, VfioBinding and InitramfsModules.
  expect(preview.changeSummary).toEqual({ create: 5 });
  for (const change of [
    "/etc/update-extlinux.conf: default_kernel_opts: + intel_iommu=on",
    "/etc/update-extlinux.conf: default_kernel_opts: + iommu=pt",
    "/etc/update-extlinux.conf: modules: + vfio",
    "/etc/update-extlinux.conf: modules: + vfio-pci",
    "/etc/update-extlinux.conf: modules: + vfio_iommu_type1",
    "/etc/update-extlinux.conf: modules: + vfio_virqfd",
    "regenerate /boot/extlinux.conf (update-extlinux)",
    "/etc/modprobe.d/vfio.conf: create /etc/modprobe.d/vfio.conf",
    "/etc/modprobe.d/vfio.conf: ids: + 8086:3a67",
    "/etc/modprobe.d/vfio.conf: ids: + 8086:3a6c",
    "/etc/modprobe.d/vfio.conf: softdep: + ehci_pci",
    "/etc/modprobe.d/vfio.conf: softdep: + uhci_hcd",
    "/etc/modprobe.d/vfio.conf: allow_unsafe_interrupts: 0 -> 1",
    "/etc/mkinitfs/features.d/vfio.modules: create with vfio, vfio-pci, vfio_iommu_type1, vfio_virqfd",
    "/etc/mkinitfs/mkinitfs.conf: features: + vfio",
    `rebuild the initramfs of ${ALPINE_KERNEL} (mkinitfs ${ALPINE_KERNEL}): its configuration changed`,
  ]) {
    expect(preview.stdout).toContain(change);
  }
  expect(treeChanges()).toEqual(prepared);

  const up = await stack.up();
  expect(up.summary.result).toBe("succeeded");
  expect(readOnHost("etc/update-extlinux.conf")).toBe(updateExtlinuxConfWithVfio);
  expect(readOnHost("etc/modprobe.d/vfio.conf")).toBe(vfioConf);
  expect(readOnHost("etc/mkinitfs/features.d/vfio.modules")).toBe(vfioFeature);
  expect(readOnHost("etc/mkinitfs/mkinitfs.conf")).toBe('features="ata base ide scsi usb virtio ext4 vfio"\n');
  // What the stand-in update-extlinux made of it is what Alpine's made on the reference host, header aside.
  const extlinuxConf = readOnHost("boot/extlinux.conf");
  expect(extlinuxConf.split("\n").slice(1)).toEqual(alpineExtlinuxConfWithVfio.split("\n").slice(1));
  const appends = extlinuxConf.split("\n").filter((line) => line.trim().startsWith("APPEND "));
  expect(appends.length).toBeGreaterThan(0);
  for (const line of appends) {
    expect(line).toMatch(/ modules=sd-mod,usb-storage,ext4,vfio,vfio-pci,vfio_iommu_type1,vfio_virqfd /);
    expect(line).toMatch(/ intel_iommu=on iommu=pt$/);
  }
  // The image holds the VFIO modules with their dependencies, and vfio.conf as written.
  const image = new Map(readInitramfs(fs.readFileSync(onHost("boot/initramfs-lts"))).map((m) => [m.name, m.data]));
  for (const module of ["vfio/vfio.ko", "vfio/pci/vfio-pci.ko", "vfio/pci/vfio-pci-core.ko", "vfio/vfio_iommu_type1.ko", "vfio/vfio_virqfd.ko"]) {
    const file = `${modules}/kernel/drivers/${module}`;
    expect({ file, bytes: image.get(file) }).toEqual({ file, bytes: fs.readFileSync(onHost(file)) });
  }
  expect(image.has(`${modules}/kernel/virt/lib/irqbypass.ko`)).toBe(true);
  expect(image.get("etc/modprobe.d/vfio.conf")?.toString("utf8")).toBe(vfioConf);
  const afterUp = treeChanges();

  const again = await stack.up();
  expect(again.summary.resourceChanges).toEqual({ same: 5 });
  expect(treeChanges()).toEqual(afterUp);

  const destroy = await stack.destroy();
  expect(destroy.summary.result).toBe("succeeded");
  // Alpine's update-extlinux keeps the generation it replaces: the one with the VFIO arguments.
  expect(readOnHost("boot/extlinux.conf.old")).toBe(extlinuxConf);
  expect(readOnHost("boot/extlinux.conf")).toBe(extlinuxBefore);
  expect(fs.readdirSync(onHost("etc/modprobe.d"))).toEqual(pristineModprobeD);
  const left = treeChanges();
  left.delete("boot/extlinux.conf.old");
  // The backups are gone; the directories that held them stay.
  for (const [p, what] of left) if (p.startsWith("var/lib/vfio-host") && what === "directory") left.delete(p);
  // Every other file has its bytes from before the stack; the image is compared by what it holds, below.
  const withoutImage = (tree: Map<string, string>) => new Map([...tree].filter(([p]) => p !== "boot/initramfs-lts"));
  expect(withoutImage(left)).toEqual(withoutImage(prepared));
  // The rebuilt image must hold what it held before: no VFIO modules and no vfio.conf. Today it
  // keeps vfio.conf, because InitramfsModules is deleted (and rebuilds) before VfioBinding removes it.
  expect(imageMembers()).toEqual(imageBefore);
  await stack.workspace.removeStack("alpine-reference");
});
