// The whole passthrough host end to end on the lab VM's real kernel, through the real Pulumi CLI and
// the project's own program with the stack `npm run demo` writes (scripts/labStack.ts): every boot
// change booted once as a trial first (GRUB's one-shot) and made permanent only after its boot was
// verified, then libvirt. Bad selections and bad guests fail at preview; from the pristine lab one
// `up` puts the USB controllers on vfio-pci through a committed trial and starts a guest that owns
// one; the guest changes in place, is replaced on a new name, and a hand edit shows in refresh; a
// trial that panics, one that hangs until the watchdog resets it and one that hangs until the VM
// is power-cycled all land on the previous configuration with every boot file byte for byte as
// before, are reported and not retried, and converge once the cause is gone (the panic's fallback
// is also the boot that shows the commit holds: arguments, drivers, the guest autostarted; the
// hung trials run with the guest kept off by the stack, so they boot no nested guest);
// destroy removes the guest, its volume and the pool, gives every file its bytes back, and the
// next boot gives the controllers back to their drivers. It also proves the lab itself: it starts
// like an unconfigured host (IOMMU off, no groups), `npm run lab -- ssh` reaches it, the emulated
// IOMMU puts the four controllers alone in one group, and `down` ends its QEMU by the recorded
// PID. One lab instance serves all of it.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Stack, UpResult } from "@pulumi/pulumi/automation";
import { ConnectionSchema } from "../../providers/ssh/connection";
import { closeAllConnections, RemoteHost, sha256Hex, withHost } from "../../providers/ssh/host";
import { labInstanceEnv, LabState, labStatePath, lockLab, readLabState } from "../../scripts/lab/labState";
import { LAB_GUEST, LAB_GUEST_HOSTDEV, LAB_USB_CONTROLLER_IDS, labLibvirt, writeLabStack } from "../../scripts/labStack";
import { commandLine } from "../faults/processes";
import { rebootLab, setStackConfig, StageTimes, TRIAL_FELL_BACK } from "./labSuite";
import { localStack, projectRoot, pulumiEnv } from "./pulumiEnv";

jest.setTimeout(45 * 60_000);

const STACK = "lab-e2e";
const labEnv = labInstanceEnv("e2e-vfio");

const LAB_USB_CONTROLLERS = ["0000:00:1d.0", "0000:00:1d.1", "0000:00:1d.2", "0000:00:1d.7"];
const LAB_NIC = "0000:00:02.0";
/** The guest as the guest-change scenario leaves it: renamed (replaced), and kept so for the rest. */
const GUEST = `${LAB_GUEST}2`;
const USB_SELECTION = { devices: LAB_USB_CONTROLLER_IDS };
const SOURCES = ["/etc/default/grub", "/etc/initramfs-tools/modules", "/etc/modprobe.d/vfio.conf"];
/** Every file a trial could touch before its commit, and the live image. */
const BOOT_FILES = [...SOURCES, "/boot/grub/grub.cfg", "/boot/grub/grubenv", "/boot/grub/custom.cfg"];
// The healthy trial answers about 30 s after softdog loads under TCG; the hung one costs the whole margin.
const WATCHDOG_SECONDS = 90;

let lab: LabState;
let env: Record<string, string>;
let backendDir: string;
let stack: Stack;
let releaseLab: () => void;
let release: string;
const timings = new StageTimes();
const timed = <T>(what: string, fn: () => Promise<T>) => timings.timed(what, fn);

const labScript = path.join(projectRoot, "scripts/lab/lab.sh");
const labSh = (...args: string[]) => execFileSync("bash", [labScript, ...args], { stdio: ["ignore", "inherit", "inherit"], env: labEnv });
/** lab.sh as a user runs it, its output captured (`lab ssh -- CMD` prints CMD's). */
const labShOutput = (...args: string[]) => execFileSync("bash", [labScript, ...args], { encoding: "utf8", env: labEnv });
const onLab = <T>(fn: (host: RemoteHost) => Promise<T>) =>
  withHost(ConnectionSchema.parse({ host: lab.host, port: lab.port, privateKey: fs.readFileSync(lab.privateKeyPath, "utf8"), hostKey: lab.hostKey }), fn);
const readOnLab = (file: string) => onLab((host) => host.readFile(file));
const sh = (script: string, ...args: string[]) => onLab(async (host) => (await host.run(["sh", "-c", script, "sh", ...args])).stdout);
const bootId = () => sh("cat /proc/sys/kernel/random/boot_id").then((s) => s.trim());
const virsh = (...args: string[]) => sh('exec env LC_ALL=C virsh --connect qemu:///system "$@"', ...args);
/** The lab stack's libvirt half with the guest changed as given. */
const libvirtWith = (guest: Record<string, unknown>) => {
  const libvirt = labLibvirt(lab);
  return { ...libvirt, domains: { guest: { ...libvirt.domains.guest, ...guest } } };
};
const POOL_DIR = "/var/lib/libvirt/images";
const MODULES_FILE = "/etc/modules-load.d/vfio-host.conf";
const cmdline = () => sh("cat /proc/cmdline");
const driversOnLab = () =>
  onLab(async (host) => {
    const out = await host.run(["sh", "-c", 'for a in "$@"; do echo "$a $(basename "$(readlink "/sys/bus/pci/devices/$a/driver")")"; done', "sh", ...LAB_USB_CONTROLLERS]);
    return Object.fromEntries(out.stdout.trim().split("\n").map((l) => l.split(" ")));
  });

/** The PCI address of the root disk's controller. */
const diskController = () => sh("basename $(readlink -f /sys/class/block/vda/device/..)").then((s) => s.trim());

/** Each IOMMU group of the lab and the PCI addresses in it, from /sys/kernel/iommu_groups. */
const iommuGroups = () =>
  sh('for d in /sys/kernel/iommu_groups/*/devices/*; do [ -e "$d" ] && g=${d%/devices/*} && echo "${g##*/} ${d##*/}"; done; true').then((out) => {
    const groups = new Map<string, string[]>();
    for (const [group, address] of out.trim().split("\n").filter(Boolean).map((line) => line.split(" "))) groups.set(group, [...(groups.get(group) ?? []), address]);
    return groups;
  });

/** sha256 (or "absent") of every boot file and of the live initramfs: what a failed trial must leave as it was. */
async function bootBytes(): Promise<Record<string, string>> {
  const files = [...BOOT_FILES, `/boot/initrd.img-${release}`];
  return Object.fromEntries(await Promise.all(files.map(async (f) => [f, await readOnLab(f).then((b) => (b ? sha256Hex(b) : "absent"))] as const)));
}

/** What a trial leaves on the host while it is staged; nothing once it was committed or fell back. */
const trialLeftovers = () =>
  sh("ls -d /boot/grub/custom.cfg /boot/vfio-host-trial /var/lib/vfio-host/trial 2>/dev/null; grub-editenv /boot/grub/grubenv list | grep next_entry; true").then((s) => s.trim());

const setConfig = (values: Record<string, unknown>) => setStackConfig(stack, values);

const up = (what: string) => timed(what, () => stack.up({ onOutput: (line) => process.stdout.write(line) }));
/** An up that must fail: its whole output, for the messages. */
async function failingUp(what: string): Promise<string> {
  let output = "";
  await timed(what, () => expect(stack.up({ onOutput: (line) => (output += line) })).rejects.toThrow());
  process.stdout.write(output);
  return output;
}

/** A plain reboot, as a user would run one, and the wait for the new boot. */
const plainReboot = () => rebootLab(onLab, bootId, 100);

beforeAll(async () => {
  releaseLab = await lockLab(labStatePath(labEnv));
  await timed("lab reset + up", async () => {
    labSh("reset");
    labSh("up");
  });
  lab = readLabState(labStatePath(labEnv));
  release = (await sh("uname -r")).trim();
  // The lab guest's firmware does not answer ACPI: libvirt-guests would hold every reboot 300 s for it.
  await sh("printf 'ON_SHUTDOWN=shutdown\nSHUTDOWN_TIMEOUT=10\n' >> /etc/default/libvirt-guests");
  backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-lab-e2e-"));
  env = pulumiEnv(backendDir);
  // A run killed before its afterAll leaves the stack file with the keys its scenarios set.
  fs.rmSync(path.join(projectRoot, `stacks/Pulumi.${STACK}.yaml`), { force: true });
  writeLabStack(STACK, lab, env);
  stack = await localStack(projectRoot, STACK, env);
  await setConfig({ trialWatchdogSeconds: String(WATCHDOG_SECONDS) });
});

afterAll(async () => {
  timings.print(`lab trial boot timings (lab: ${lab?.accel})`);
  await closeAllConnections();
  if (backendDir) fs.rmSync(backendDir, { recursive: true, force: true });
  fs.rmSync(path.join(projectRoot, `stacks/Pulumi.${STACK}.yaml`), { force: true });
  labSh("down");
  releaseLab?.();
});

let original: Record<string, string>;
let originalSources: Record<string, Buffer | undefined>;
let originalDrivers: Record<string, string>;

test("bad selections fail at preview, before anything is written", async () => {
  original = await bootBytes();
  originalSources = Object.fromEntries(await Promise.all(SOURCES.map(async (f) => [f, await readOnLab(f)] as const)));
  originalDrivers = await driversOnLab();
  expect(Object.values(originalDrivers)).not.toContain("vfio-pci");
  // The lab starts like an unconfigured host, and `npm run lab -- ssh` reaches it: IOMMU off, no groups, the four controllers.
  expect((await cmdline()).split(" ")).toContain("intel_iommu=off");
  expect((await iommuGroups()).size).toBe(0);
  const lspci = labShOutput("ssh", "--", "lspci", "-nn");
  for (const id of LAB_USB_CONTROLLER_IDS) expect(lspci).toContain(`[${id}]`);

  await setConfig({ vfio: { devices: ["8086:293"] } });
  await expect(stack.preview()).rejects.toThrow(/"8086:293" is neither a vendor:device id nor a PCI address/);
  await setConfig({ vfio: { devices: [await diskController()] } });
  await expect(stack.preview()).rejects.toThrow(/the controller of the root filesystem/);
  await setConfig({ vfio: USB_SELECTION });

  const guests = await sh(`virsh list --all --name; virsh pool-list --all --name; ls -A ${POOL_DIR}; ls /etc/modules-load.d`);
  await setConfig({ libvirt: libvirtWith({ hostdevs: ["0000:00:1f.2"] }) });
  await expect(stack.preview()).rejects.toThrow(/0000:00:1f\.2 is not one of the devices the stack's VfioBinding puts on vfio-pci/);
  await setConfig({ libvirt: libvirtWith({ hostdevs: ["0000:00:1e.5"] }) });
  await expect(stack.preview()).rejects.toThrow(/there is no PCI device 0000:00:1e\.5 on the host/);
  await setConfig({ libvirt: libvirtWith({ networks: [{ type: "user", mac: "52:54:00:zz:00:01" }] }) });
  await expect(stack.preview()).rejects.toThrow(/"52:54:00:zz:00:01" is not a MAC address/);
  await setConfig({ libvirt: { ...labLibvirt(lab), pools: [{ name: "default", path: '/var/lib/libvirt/im"ages' }] } });
  await expect(stack.preview()).rejects.toThrow(/contains a quote, backslash, newline/);
  await setConfig({ libvirt: labLibvirt(lab) });
  expect(await bootBytes()).toEqual(original);
  expect(await sh(`virsh list --all --name; virsh pool-list --all --name; ls -A ${POOL_DIR}; ls /etc/modules-load.d`)).toBe(guests);
});

test("one up from the pristine lab: the controllers go to vfio-pci through one trial boot, made permanent, then the guest starts with one", async () => {
  const preview = await stack.preview({ diff: true });
  for (const expected of [
    "intel_iommu=off -> intel_iommu=on",
    "+ iommu=pt",
    "/etc/modprobe.d/vfio.conf",
    "/etc/initramfs-tools/modules",
    "update-grub",
    "boot once with these changes",
    `${MODULES_FILE}: + tun`,
    `define pool default (dir at ${POOL_DIR})`,
    "import /srv/vfio-host/lab-guest.qcow2.xz as default/lab-guest.qcow2 once its StoragePool has created pool default",
    `pass ${LAB_GUEST_HOSTDEV} through once the stack's reboot has put it on vfio-pci`,
    `define domain ${LAB_GUEST} once its Volumes have imported default/lab-guest.qcow2`,
  ]) {
    expect(preview.stdout).toContain(expected);
  }

  const bootBefore = await bootId();
  const result: UpResult = await up("up: trial boot and commit");
  expect(result.summary.result).toBe("succeeded");
  const trialBoot = await bootId();
  expect(trialBoot).not.toBe(bootBefore);
  // The trial's boot is the one verified; the commit needs no second reboot.
  expect(result.outputs.verifiedBootId.value).toBe(trialBoot);
  expect(await cmdline()).toMatch(/vfio_host\.trial=[0-9a-f]{12}/);
  expect(Object.values(await driversOnLab())).toEqual(["vfio-pci", "vfio-pci", "vfio-pci", "vfio-pci"]);
  expect(result.outputs.iommuGroups.value).toHaveLength(1); // the four controllers share one group
  // ...alone: the emulated IOMMU puts them in a group of their own, apart from the boot disk's controller.
  const groups = [...(await iommuGroups()).values()];
  expect(groups.filter((members) => members.some((a) => LAB_USB_CONTROLLERS.includes(a))).map((m) => [...m].sort())).toEqual([LAB_USB_CONTROLLERS]);
  const disk = await diskController();
  expect(groups.find((members) => members.includes(disk))).not.toContain(LAB_USB_CONTROLLERS[0]);

  // Committed: the sources, the live image and grub.cfg hold the change; nothing of the trial is left.
  expect((await readOnLab("/etc/default/grub"))!.toString()).toMatch(/GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on console=ttyS0 no_timer_check iommu=pt"/);
  expect((await readOnLab("/etc/modprobe.d/vfio.conf"))!.toString()).toContain(`options vfio-pci ids=${LAB_USB_CONTROLLER_IDS.join(",")}`);
  expect(await sh('lsinitramfs "/boot/initrd.img-$1" | grep -E "vfio-pci.ko|modprobe.d/vfio.conf"', release)).toMatch(/vfio-pci\.ko[\s\S]*vfio\.conf|vfio\.conf[\s\S]*vfio-pci\.ko/);
  expect(await trialLeftovers()).toBe("");
  expect(sha256Hex((await readOnLab("/boot/grub/grubenv"))!)).toBe(original["/boot/grub/grubenv"]);
  await expectGuestOwnsController();

  const again = await up("no-op up");
  expect(Object.keys(again.summary.resourceChanges ?? {})).toEqual(["same"]);
  expect(await bootId()).toBe(trialBoot);

  // npm run bench's smoke on the converged lab: the project's preview and Ansible's --check of the
  // same job, side by side, each finding nothing to change (the bench fails otherwise).
  const bench = await timed("bench smoke", async () =>
    execFileSync("node", [path.join(projectRoot, "dist/bench/bench.js"), "--smoke", "--lab-state", labEnv.LAB_STATE!, "--stack", STACK], {
      cwd: projectRoot,
      env: { ...labEnv, VFIO_HOST_STATE_DIR: backendDir },
      encoding: "utf8",
    }),
  );
  console.log(bench);
  expect(bench).toMatch(/\| preview of a converged host \| `pulumi preview` \| [\d.]+ .*\| `ansible-playbook --check` \| [\d.]+ /);
  expect(bench).toMatch(/\| VfioBinding\.check \| [\d.]+ \| [\d.]+ \| \d+ \|/);
});

/** The commit is real: a boot without a trial (the panic scenario's fallback) has the arguments and the drivers, and the guest autostarted. */
async function expectCommittedBoot(): Promise<void> {
  const line = await cmdline();
  expect(line).toContain("intel_iommu=on");
  expect(line).toContain("iommu=pt");
  expect(line).not.toContain("intel_iommu=off");
  expect(line).not.toContain("vfio_host.trial");
  expect(Object.values(await driversOnLab())).toEqual(["vfio-pci", "vfio-pci", "vfio-pci", "vfio-pci"]);
  await expectGuestOwnsController(GUEST);
}

/** The guest runs, its definition passes the controller through, and its QEMU holds the controller's VFIO group. */
async function expectGuestOwnsController(name = LAB_GUEST): Promise<void> {
  expect((await virsh("domstate", name)).trim()).toBe("running");
  const live = await virsh("dumpxml", name);
  expect(live).toMatch(/<hostdev mode='subsystem' type='pci' managed='yes'>[\s\S]*slot='0x1d' function='0x0'[\s\S]*<alias name='hostdev0'\/>/);
  expect(live).toMatch(/^<domain type='qemu'/); // no KVM in the lab: TCG
  expect(live).toContain("<memballoon model='none'/>");
  expect(live).not.toContain("<graphics");
  const group = path.basename((await sh(`readlink /sys/bus/pci/devices/${LAB_GUEST_HOSTDEV}/iommu_group`)).trim());
  expect(await sh(`for f in /proc/$(pgrep -f "guest=${name}," | head -n 1)/fd/*; do readlink "$f"; done`)).toContain(`/dev/vfio/${group}`);
}

test("the guest changes in place (a restart it ignores is not forced), is replaced on a new name, and a hand edit shows in refresh", async () => {
  const uuid = (await virsh("domuuid", LAB_GUEST)).trim();
  await setConfig({ libvirt: libvirtWith({ memoryMiB: 160 }) });
  const preview = await stack.preview({ diff: true });
  expect(preview.changeSummary).toMatchObject({ update: 1 });
  expect(preview.stdout).toContain("memoryMiB: 128 -> 160 (the running guest gets this at its next start: it is restarted)");
  // The lab guest's firmware ignores the ACPI request: an update never powers a guest off by itself.
  expect(await failingUp("guest memory: the restart times out")).toContain(
    `domain ${LAB_GUEST} did not shut down within 15 s of the ACPI request (virsh shutdown); shut the guest down from inside, or power it off with virsh destroy ${LAB_GUEST}, then run pulumi up again`,
  );
  expect((await virsh("domstate", LAB_GUEST)).trim()).toBe("running");
  await virsh("destroy", LAB_GUEST);
  await up("guest memory, after virsh destroy");
  expect((await virsh("domstate", LAB_GUEST)).trim()).toBe("running");
  expect((await virsh("domuuid", LAB_GUEST)).trim()).toBe(uuid);
  expect(await virsh("dumpxml", "--inactive", LAB_GUEST)).toContain("<memory unit='KiB'>163840</memory>");

  await setConfig({ libvirt: libvirtWith({ memoryMiB: 160, name: GUEST }) });
  expect((await stack.preview()).changeSummary).toMatchObject({ replace: 1 });
  await up("guest renamed (replaced)");
  expect((await virsh("list", "--all", "--name")).trim()).toBe(GUEST);

  await virsh("setmaxmem", GUEST, "150M", "--config");
  const refresh = await timed("refresh", () => stack.refresh());
  expect(refresh.summary.resourceChanges).toMatchObject({ update: 1 });
  // The renamed guest stays for the scenarios below (a rename back would only start another one).
  await expectGuestOwnsController(GUEST);
});

test("a trial that panics reboots itself into the previous configuration: reported, every byte as before, not retried, converges without the cause", async () => {
  const before = await bootBytes();
  const bootBefore = await bootId();
  await setConfig({ kernelArgs: ["intel_iommu=on", "iommu=pt", "root=/dev/disk/by-label/vfio-host-no-root"], acknowledgeBootCriticalArgs: ["root"] });
  const output = await failingUp("up: trial panics, falls back");
  expect(output).toMatch(TRIAL_FELL_BACK);
  expect(output).toMatch(/The trial left no journal/);
  const serial = fs.readFileSync(lab.serialLog, "utf8");
  expect(serial).toContain("ALERT!  /dev/disk/by-label/vfio-host-no-root does not exist.");
  expect(serial).toContain("Rebooting automatically due to panic= boot argument");
  const fallbackBoot = await bootId();
  expect(fallbackBoot).not.toBe(bootBefore);
  expect(await bootBytes()).toEqual(before);
  expect(await trialLeftovers()).toBe("");
  // The fallback boots the committed configuration, as any later reboot does: no plain reboot needed to show it.
  await expectCommittedBoot();

  // Again without a change: the failure is reported, with no reboot and no write.
  expect(await failingUp("up: same change, no retry")).toMatch(/Not retrying without a change/);
  expect(await bootId()).toBe(fallbackBoot);
  expect(await bootBytes()).toEqual(before);

  // Without the cause there is nothing left to boot: the boot found passes, no reboot. The same up
  // keeps the guest off and out of autostart (powered off first: it ignores ACPI), so the hung
  // trials below boot no nested guest (its firmware's start costs the lab about 30 CPU-seconds);
  // the definition comes back from the hand edit the refresh recorded.
  await virsh("destroy", GUEST);
  await setConfig({
    kernelArgs: ["intel_iommu=on", "iommu=pt"],
    acknowledgeBootCriticalArgs: [],
    libvirt: libvirtWith({ memoryMiB: 160, name: GUEST, running: false, autostart: false }),
  });
  expect((await up("up: cause removed, guest kept off")).summary.result).toBe("succeeded");
  expect(await bootId()).toBe(fallbackBoot);
  expect(await bootBytes()).toEqual(before);
  expect((await virsh("domstate", GUEST)).trim()).toBe("shut off");
  expect(await virsh("dominfo", GUEST)).toMatch(/^Autostart:\s+disable$/m);
  expect(await virsh("dumpxml", "--inactive", GUEST)).toContain("<memory unit='KiB'>163840</memory>");
});

test("a trial that claims the SSH NIC hangs unreachable until the watchdog resets it into the previous configuration", async () => {
  const before = await bootBytes();
  await setConfig({ vfio: { devices: [...LAB_USB_CONTROLLER_IDS, LAB_NIC], allowHostCritical: [LAB_NIC] } });
  const output = await failingUp("up: trial hangs, watchdog resets it");
  expect(output).toMatch(TRIAL_FELL_BACK);
  expect(output).toMatch(new RegExp(`raise vfio-host:trialWatchdogSeconds \\(now ${WATCHDOG_SECONDS}\\)`));
  expect(fs.readFileSync(lab.serialLog, "utf8")).toContain("softdog: Initiating system reboot");
  expect(await cmdline()).not.toContain("vfio_host.trial");
  expect(await bootBytes()).toEqual(before);
  expect(await trialLeftovers()).toBe("");

  const bootNow = await bootId();
  await setConfig({ vfio: USB_SELECTION });
  expect((await up("up: NIC dropped again")).summary.result).toBe("succeeded");
  expect(await bootId()).toBe(bootNow);
});

/** Waits until the lab's serial log holds `text`; fails after `ms`. */
async function untilSerialShows(text: string, ms: number): Promise<void> {
  for (const deadline = Date.now() + ms; !fs.readFileSync(lab.serialLog, "utf8").includes(text); await new Promise((r) => setTimeout(r, 2_000))) {
    if (Date.now() > deadline) throw new Error(`the lab's serial log (${lab.serialLog}) did not show ${text} within ${ms / 1000} s`);
  }
}

test("without a watchdog a hung trial waits for a power cycle, after which the host is on its previous configuration", async () => {
  const before = await bootBytes();
  // init=/bin/sh: the trial boots to a shell on the serial console that nobody answers, unreachable.
  await setConfig({
    kernelArgs: ["intel_iommu=on", "iommu=pt", "init=/bin/sh"],
    acknowledgeBootCriticalArgs: ["init"],
    trialWatchdogSeconds: "0",
    rebootTimeoutSeconds: "45",
  });
  const output = await failingUp("up: trial hangs, no watchdog");
  const trial = /did not come back within 45s after booting trial ([0-9a-f]{12})\. Power-cycle it: it will boot the previous configuration/.exec(output)?.[1];
  expect(trial).toBeDefined();
  // An admin power-cycles a host whose console shows the trial's kernel hung, not one still in its
  // firmware: on a loaded machine 45 s can end before GRUB has started the trial, and GRUB keeps
  // the one-shot until it does (a power cut then boots the trial once more).
  await timed("the trial's kernel on the console", () => untilSerialShows(`vfio_host.trial=${trial}`, 600_000));
  await timed("power cycle", async () => {
    process.kill(lab.pid, "SIGKILL"); // the lab's QEMU, started by this suite
    await closeAllConnections();
    labSh("up");
    lab = readLabState(labStatePath(labEnv));
    await setConfig({ port: String(lab.port) });
  });
  const poweredOn = await bootId();
  expect(await cmdline()).not.toContain("vfio_host.trial");
  const stillStaged = await bootBytes();
  for (const f of [...SOURCES, "/boot/grub/grub.cfg", `/boot/initrd.img-${release}`]) expect(stillStaged[f]).toBe(before[f]);

  // The next up finds the previous configuration: it reports the fallback and clears the trial, no reboot.
  expect(await failingUp("up: after the power cycle")).toMatch(TRIAL_FELL_BACK);
  expect(await bootId()).toBe(poweredOn);
  expect(await bootBytes()).toEqual(before);
  expect(await trialLeftovers()).toBe("");

  await setConfig({ kernelArgs: ["intel_iommu=on", "iommu=pt"], acknowledgeBootCriticalArgs: [], trialWatchdogSeconds: String(WATCHDOG_SECONDS), rebootTimeoutSeconds: "900" });
  expect((await up("up: cause removed")).summary.result).toBe("succeeded");
  expect(await bootId()).toBe(poweredOn);
  expect(Object.values(await driversOnLab())).toEqual(["vfio-pci", "vfio-pci", "vfio-pci", "vfio-pci"]);
});

test("destroy removes the guest, its volume and the pool, gives every source file its bytes back, and the next boot the host drivers", async () => {
  const destroy = await timed("destroy", () => stack.destroy({ onOutput: (line) => process.stdout.write(line) }));
  expect(destroy.summary.result).toBe("succeeded");
  expect((await virsh("list", "--all", "--name")).trim()).toBe("");
  expect(await virsh("pool-list", "--all", "--name")).not.toMatch(/\bdefault\b/);
  expect(await sh(`ls -A ${POOL_DIR}; [ -e ${MODULES_FILE} ] && echo modules-file-left || true`)).toBe("");
  // Packages stay installed and libvirtd (enabled before) stays enabled.
  expect((await sh("systemctl is-enabled libvirtd; dpkg-query -W -f='${db:Status-Abbrev}' libvirt-daemon-system")).trim()).toBe("enabled\nii");
  for (const f of SOURCES) {
    const now = await readOnLab(f);
    expect(now === undefined ? originalSources[f] === undefined : now.equals(originalSources[f]!)).toBe(true);
  }
  await timed("plain reboot", plainReboot);
  expect(await driversOnLab()).toEqual(originalDrivers);
  expect(await cmdline()).toContain("intel_iommu=off");
});

test("`npm run lab -- down` stops the VM by its recorded PID and leaves no QEMU behind", () => {
  labSh("down");
  // The recorded PID's command line names the overlay, so no process with it means the VM is gone
  // (a zombie's command line is empty).
  const withOverlay = fs
    .readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => commandLine(Number(pid)).includes(`file=${lab.overlay},`));
  expect(withOverlay).toEqual([]);
  expect(fs.existsSync(labStatePath(labEnv))).toBe(false);
});
