// The libvirt resources end to end on the lab VM, through the real Pulumi CLI: bad inputs fail at
// preview with nothing changed on the host; up installs (already there), loads tun, defines a dir
// pool, imports two images and defines a headless UEFI guest owning a USB controller bound to
// vfio-pci; a second up does nothing; memory is updated in place, a new name replaces the guest, a
// hand edit shows up in refresh; destroy leaves no domain and no pool behind.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Stack } from "@pulumi/pulumi/automation";
import { ConnectionSchema } from "../../providers/ssh/connection";
import { closeAllConnections, RemoteHost, withHost } from "../../providers/ssh/host";
import { LabState, labStatePath, lockLab, readLabState } from "../../scripts/lab/labState";
import { rebootLab, StageTimes } from "./labSuite";
import { localStack, projectRoot, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(60 * 60_000);

const workDir = path.join(projectRoot, "test/e2e/fixtures/libvirt");
// The USB controllers of slot 1d share one IOMMU group: all of them go to vfio-pci, one to the guest.
const LAB_USB_CONTROLLERS = ["0000:00:1d.0", "0000:00:1d.1", "0000:00:1d.2", "0000:00:1d.7"];
const PASSED = "0000:00:1d.0";
const POOL_DIR = "/var/lib/vfio-host/e2e-pool";
const MODULES_FILE = "/etc/modules-load.d/vfio-host.conf";
const RESOURCES = 7; // the stack, the component, packages, the pool, two volumes, the domain

// An instance of its own (key, overlay, port, lock) over the cached image, as labVfio.test.ts does.
const labEnv = {
  ...process.env,
  LAB_STATE: path.join(process.env.VFIO_HOST_CACHE ?? path.join(os.homedir(), ".cache/vfio-host"), "lab-e2e-libvirt"),
};

let lab: LabState;
let releaseLab: (() => void) | undefined;
let env: Record<string, string>;
let backendDir: string;
let stack: Stack;

const labSh = (...args: string[]) =>
  execFileSync("bash", [path.join(projectRoot, "scripts/lab/lab.sh"), ...args], { stdio: ["ignore", "inherit", "inherit"], env: labEnv });
const onLab = <T>(fn: (host: RemoteHost) => Promise<T>) =>
  withHost(ConnectionSchema.parse({ host: lab.host, port: lab.port, privateKey: fs.readFileSync(lab.privateKeyPath, "utf8"), hostKey: lab.hostKey }), fn);
const sh = (script: string, ...args: string[]) => onLab(async (host) => (await host.run(["sh", "-c", script, "sh", ...args], { timeoutMs: 600_000 })).stdout);
const virsh = (...args: string[]) => sh('exec env LC_ALL=C virsh --connect qemu:///system "$@"', ...args);
const bootId = () => sh("cat /proc/sys/kernel/random/boot_id").then((s) => s.trim());

/** What the bad previews must not change: domains, pools, the modules file, the pool directory. */
const hostSnapshot = () =>
  sh(`virsh list --all --name; echo ---; virsh pool-list --all --name; echo ---; ls /etc/modules-load.d; echo ---; ls -d ${POOL_DIR} 2>&1; lsmod | grep -c '^tun ' || true`);

const timings = new StageTimes();
const timed = <T>(what: string, fn: () => Promise<T>) => timings.timed(what, fn);

/**
 * Turns the IOMMU on (the pristine lab boots with intel_iommu=off), hands the USB controllers to
 * vfio-pci now, and unloads KVM: the lab's qemu64 CPU offers SVM, which TCG emulates, and a nested
 * KVM guest with a passed-through device brings the lab's QEMU down within a minute.
 */
async function prepareLab(): Promise<void> {
  await sh("sed -i 's/intel_iommu=off/intel_iommu=on/' /etc/default/grub && update-grub 2>/dev/null");
  await rebootLab(onLab, bootId, 200);
  await sh(
    `modprobe vfio-pci; for a; do d=/sys/bus/pci/devices/$a; echo vfio-pci > $d/driver_override
[ -e $d/driver ] && echo $a > $d/driver/unbind; echo $a > /sys/bus/pci/drivers_probe; done
for m in kvm_amd kvm_intel kvm; do [ -d /sys/module/$m ] && rmmod $m; done; true`,
    ...LAB_USB_CONTROLLERS,
  );
  // The images the volumes import: made here, nothing is downloaded.
  await sh("qemu-img create -q -f qcow2 /root/e2e-disk.qcow2 64M && truncate -s 1M /root/e2e-seed.raw && gzip -f /root/e2e-seed.raw");
}

async function setConfig(values: Record<string, string>) {
  await stack.setAllConfig(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { value: v }])));
}

async function expectPreviewFails(values: Record<string, string>, message: RegExp) {
  await setConfig(values);
  await expect(stack.preview()).rejects.toThrow(message);
  for (const key of Object.keys(values)) await stack.removeConfig(key);
}

beforeAll(async () => {
  releaseLab = await lockLab(labStatePath(labEnv));
  await timed("lab reset + up", async () => {
    labSh("reset");
    labSh("up");
  });
  lab = readLabState(labStatePath(labEnv));
  await timed("IOMMU on (reboot), controllers to vfio-pci, images", prepareLab);
  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-libvirt-e2e-"));
  env = pulumiEnv(backendDir);
  stack = await localStack(workDir, "libvirt-e2e", env);
  const diskSha256 = (await sh("sha256sum /root/e2e-disk.qcow2")).split(" ")[0];
  await stack.setAllConfig({
    host: { value: lab.host },
    port: { value: String(lab.port) },
    user: { value: lab.user },
    hostKey: { value: lab.hostKey },
    sshPrivateKey: { value: fs.readFileSync(lab.privateKeyPath, "utf8"), secret: true },
    diskSha256: { value: diskSha256 },
    hostdevs: { value: JSON.stringify([PASSED]) },
  });
}, 30 * 60_000);

afterAll(async () => {
  timings.print(`libvirt e2e timings (lab: ${lab?.accel})`);
  await closeAllConnections();
  if (backendDir) fs.rmSync(backendDir, { recursive: true, force: true });
  labSh("down");
  releaseLab?.();
}, 5 * 60_000);

test("bad inputs fail at preview and change nothing on the host", async () => {
  const before = await hostSnapshot();
  await timed("six failing previews", async () => {
    await expectPreviewFails({ mac: "52:54:00:zz:00:01" }, /"52:54:00:zz:00:01" is not a MAC address/);
    await expectPreviewFails({ hostdevs: JSON.stringify(["0000:00:1e.5"]) }, /there is no PCI device 0000:00:1e\.5 on the host/);
    await expectPreviewFails({ hostdevs: JSON.stringify(["0000:00:1f.2"]) }, /0000:00:1f\.2 is driven by ahci on the host, not vfio-pci.*VfioBinding/s);
    await expectPreviewFails({ poolPath: '/var/lib/vfio-host/e2e"pool' }, /contains a quote, backslash, newline/);
    await expectPreviewFails({ poolPath: "/var/lib/vfio-host/e2e\npool" }, /contains a quote, backslash, newline/);
    await expectPreviewFails({ volumePool: "nope" }, /pool "nope" is not declared/);
  });
  await stack.setConfig("hostdevs", { value: JSON.stringify([PASSED]) });
  expect(await hostSnapshot()).toBe(before);
});

test("up defines what was declared, and a second up changes nothing", async () => {
  const preview = await timed("first preview", () => stack.preview({ diff: true }));
  expect(preview.changeSummary).toMatchObject({ create: RESOURCES });
  // The pool, its volumes and the guest depend on each other: preview says what waits for what.
  for (const line of [
    `${MODULES_FILE}: + tun`,
    "load kernel module tun (modprobe)",
    "define pool e2e (dir at /var/lib/vfio-host/e2e-pool)",
    "import /root/e2e-disk.qcow2 as e2e/e2e-disk.qcow2 once its StoragePool has created pool e2e",
    "define domain e2e-guest once its Volumes have imported e2e/e2e-disk.qcow2, e2e/e2e-seed.raw",
  ]) {
    expect(preview.stdout).toContain(line);
  }

  const up = await timed("first up", () => stack.up({ onOutput: (l) => process.stdout.write(l) }));
  expect(up.summary.result).toBe("succeeded");
  expect(up.outputs.volumes.value["e2e/e2e-disk.qcow2"]).toEqual({ path: `${POOL_DIR}/e2e-disk.qcow2`, format: "qcow2", size: 64 * 2 ** 20 });
  expect(up.outputs.volumes.value["e2e/e2e-seed.raw"]).toEqual({ path: `${POOL_DIR}/e2e-seed.raw`, format: "raw", size: 2 ** 20 });

  const xml = await virsh("dumpxml", "--inactive", "e2e-guest");
  expect(xml).toMatch(/<hostdev mode='subsystem' type='pci' managed='yes'>\s*<source>\s*<address domain='0x0000' bus='0x00' slot='0x1d' function='0x0'\/>/);
  expect(xml).toMatch(/^<domain type='qemu'>/); // no /dev/kvm: TCG
  expect(xml).toMatch(/<os firmware='efi'>/);
  expect(xml).toContain("<mac address='52:54:00:e2:e0:01'/>");
  expect(xml).toContain("<memballoon model='none'/>");
  expect(xml).not.toContain("<graphics");
  expect(xml).toContain("<memory unit='KiB'>131072</memory>");
  expect(await sh(`cat ${MODULES_FILE}; lsmod | grep -c '^tun '`)).toMatch(/^#.*\ntun\n1\n$/);
  expect(await virsh("pool-info", "e2e")).toMatch(/State:\s+running/);
  expect(up.outputs.domainUuid.value).toBe((await virsh("domuuid", "e2e-guest")).trim());

  const again = await timed("second up", () => stack.up());
  expect(again.summary.resourceChanges).toEqual({ same: RESOURCES });
});

test("memory changes in place, a new name replaces the guest, a hand edit shows in refresh", async () => {
  const uuid = (await virsh("domuuid", "e2e-guest")).trim();
  await stack.setConfig("memoryMiB", { value: "160" });
  const preview = await stack.preview({ diff: true });
  expect(preview.changeSummary).toMatchObject({ update: 1 });
  expect(preview.stdout).toContain("memoryMiB: 128 -> 160");
  await timed("memory update", () => stack.up());
  expect((await virsh("domuuid", "e2e-guest")).trim()).toBe(uuid);
  expect(await virsh("dumpxml", "--inactive", "e2e-guest")).toContain("<memory unit='KiB'>163840</memory>");

  await stack.setConfig("domainName", { value: "e2e-guest2" });
  expect((await stack.preview()).changeSummary).toMatchObject({ replace: 1 });
  await timed("rename (replace)", () => stack.up());
  expect((await virsh("list", "--all", "--name")).trim()).toBe("e2e-guest2");

  await virsh("setmaxmem", "e2e-guest2", "150M", "--config");
  const refresh = await timed("refresh", () => stack.refresh());
  expect(refresh.summary.resourceChanges).toMatchObject({ update: 1 });
  await stack.up();
  expect(await virsh("dumpxml", "--inactive", "e2e-guest2")).toContain("<memory unit='KiB'>163840</memory>");
});

test("the guest starts under TCG with the controller passed through", async () => {
  await stack.setConfig("running", { value: "true" });
  const up = await timed("start (running: true)", () => stack.up());
  expect(up.summary.result).toBe("succeeded");
  expect((await virsh("domstate", "e2e-guest2")).trim()).toBe("running");
  // QEMU holds the controller's VFIO group open, and the live XML has the device with an alias.
  const live = await virsh("dumpxml", "e2e-guest2");
  expect(live).toMatch(/<hostdev mode='subsystem' type='pci' managed='yes'>[\s\S]*slot='0x1d' function='0x0'[\s\S]*<alias name='hostdev0'\/>/);
  const group = path.basename(await sh(`readlink /sys/bus/pci/devices/${PASSED}/iommu_group`).then((s) => s.trim()));
  expect(await sh('for f in /proc/$(pgrep -f "guest=e2e-guest2" | head -n 1)/fd/*; do readlink "$f"; done')).toContain(`/dev/vfio/${group}`);
});

test("destroy leaves no domain and no pool definition, and gives back the modules file", async () => {
  const destroy = await timed("destroy (guest ignores ACPI: forced off after shutdownTimeoutSeconds, 15 s)", () => stack.destroy({ onOutput: (l) => process.stdout.write(l) }));
  expect(destroy.summary.result).toBe("succeeded");
  expect((await virsh("list", "--all", "--name")).trim()).toBe("");
  expect(await virsh("pool-list", "--all", "--name")).not.toMatch(/\be2e\b/);
  expect(await sh(`ls -A ${POOL_DIR}; [ -e ${MODULES_FILE} ] && echo modules-file-left || true`)).toBe("");
  // Packages stay installed and libvirtd (enabled before) stays enabled.
  expect((await sh("systemctl is-enabled libvirtd; dpkg-query -W -f='${db:Status-Abbrev}' libvirt-daemon-system")).trim()).toBe("enabled\nii");
  await stack.workspace.removeStack("libvirt-e2e");
});
