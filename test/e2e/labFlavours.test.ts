// The boot-isolation proof on the lab flavours other than GRUB + initramfs-tools (which labVfio
// proves): UEFI + systemd-boot + dracut, and BIOS + extlinux + initramfs-tools, each on its own lab
// instance with its own stack, both stacks on one state backend. Each flavour's preview names the
// backend and every change; then one `npm run fleet -- up --max-rebooting 1` applies both stacks as
// a user with several hosts would, so the two real reboots come in waves: the second host is still
// on its old boot when the first one's run has ended. Each host reboots once into a kernel command
// line with the args and the four USB controllers on vfio-pci, a second `up` changes nothing, and
// destroy gives every source file its bytes back. systemd-boot has a one-shot (LoaderEntryOneShot):
// its change is booted once as a trial and committed without a second reboot, and a trial that
// panics falls back to the previous configuration with every byte as before. extlinux has none the
// stack uses, so its change is written and booted directly (the stack's trialBoot stays on and says so).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Stack } from "@pulumi/pulumi/automation";
import { ConnectionSchema } from "../../providers/ssh/connection";
import { closeAllConnections, RemoteHost, sha256Hex, withHost } from "../../providers/ssh/host";
import { LabFlavor, labInstanceEnv, LabState, labStatePath, lockLab, readLabState } from "../../scripts/lab/labState";
import { LAB_USB_CONTROLLER_IDS, writeLabStack } from "../../scripts/labStack";
import { runCommand } from "../testhost/command";
import { mostAtOnce, parseStatusLine, startFleet, summaryRows } from "./fleetRun";
import { setStackConfig, StageTimes, TRIAL_FELL_BACK } from "./labSuite";
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
  /** Shell code printing what a trial leaves while staged (entries, images, the one-shot), for a loader with trial boots. */
  readonly trialLeftovers?: string;
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
      "boot once with these changes (systemd-boot's LoaderEntryOneShot)",
    ],
    // The copy in the entry is what systemd-boot loads (Debian's kernel-install keeps the name initrd.img-<release>).
    listing: 'lsinitrd /boot/efi/$(cat /etc/machine-id)/$(uname -r)/initrd*',
    trialLeftovers:
      "ls -d /boot/efi/loader/entries/vfio-host-trial-* /boot/efi/vfio-host-trial /var/lib/vfio-host/trial 2>/dev/null; " +
      "tail -c +5 /sys/firmware/efi/efivars/LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f 2>/dev/null | tr -d '\\000'; true",
  },
  {
    flavor: "extlinux",
    sources: "echo /boot/extlinux/extlinux.conf; echo /etc/initramfs-tools/modules; echo /etc/modprobe.d/vfio.conf",
    preview: ["backend syslinux", "/boot/extlinux/extlinux.conf: LABEL", "intel_iommu=off -> intel_iommu=on", "/etc/initramfs-tools/modules", "update-initramfs", "/etc/modprobe.d/vfio.conf"],
    listing: 'lsinitramfs "/boot/initrd.img-$(uname -r)"',
  },
];

/** One flavour's lab instance and stack, from the lab's boot to its teardown. */
class FlavourLab {
  readonly stackName: string;
  readonly timings = new StageTimes();
  private readonly labEnv: NodeJS.ProcessEnv;
  private readonly env: Record<string, string>;
  private lab?: LabState;
  private stack?: Stack;
  private original: Record<string, string> = {};
  private released?: () => void;
  private output = "";

  constructor(
    readonly flavour: Flavour,
    backendDir: string,
  ) {
    this.stackName = `lab-e2e-${flavour.flavor}`;
    this.labEnv = labInstanceEnv("e2e-flavour", flavour.flavor);
    this.env = pulumiEnv(backendDir);
  }

  // Not execFileSync: the flavours run side by side, and a synchronous call would hold the other's run still.
  private labSh(...args: string[]) {
    return runCommand("bash", [path.join(projectRoot, "scripts/lab/lab.sh"), ...args], { stderr: "inherit", env: this.labEnv });
  }

  private onLab<T>(fn: (host: RemoteHost) => Promise<T>): Promise<T> {
    const lab = this.lab!;
    return withHost(ConnectionSchema.parse({ host: lab.host, port: lab.port, privateKey: fs.readFileSync(lab.privateKeyPath, "utf8"), hostKey: lab.hostKey }), fn);
  }

  sh(script: string, ...args: string[]): Promise<string> {
    return this.onLab(async (host) => (await host.run(["sh", "-c", script, "sh", ...args])).stdout);
  }

  bootId(): Promise<string> {
    return this.sh("cat /proc/sys/kernel/random/boot_id").then((out) => out.trim());
  }

  private drivers(): Promise<string[]> {
    return this.sh('for a in "$@"; do echo "$(basename "$(readlink "/sys/bus/pci/devices/$a/driver")")"; done', ...LAB_USB_CONTROLLERS).then((out) => out.trim().split("\n"));
  }

  /** sha256 (or "absent") of every source file the stack may write. */
  private async sourceBytes(): Promise<Record<string, string>> {
    const files = (await this.sh(this.flavour.sources)).trim().split("\n");
    return Object.fromEntries(await Promise.all(files.map(async (f) => [f, await this.onLab((h) => h.readFile(f)).then((b) => (b ? sha256Hex(b) : "absent"))] as const)));
  }

  /** The pristine lab booted, its stack written, the preview checked: nothing on the host changed. */
  async prepare(): Promise<void> {
    this.released = await lockLab(labStatePath(this.labEnv));
    await this.timings.timed("lab reset + up", async () => {
      await this.labSh("reset");
      await this.labSh("up");
    });
    this.lab = readLabState(labStatePath(this.labEnv));
    expect(this.lab.flavor).toBe(this.flavour.flavor);
    fs.rmSync(path.join(projectRoot, `stacks/Pulumi.${this.stackName}.yaml`), { force: true });
    writeLabStack(this.stackName, this.lab, this.env, { libvirt: false });
    this.stack = await localStack(projectRoot, this.stackName, this.env);

    this.original = await this.sourceBytes();
    expect(await this.drivers()).not.toContain("vfio-pci");
    expect(await this.sh("cat /proc/cmdline")).toContain("intel_iommu=off");
    const diff = await this.timings.timed("preview", () => this.stack!.preview({ diff: true }));
    for (const expected of this.flavour.preview) expect(diff.stdout).toContain(expected);
    expect(await this.sourceBytes()).toEqual(this.original);
  }

  /** After the fleet's up: the new boot is the verified one, isolated; a second up changes nothing; destroy gives the bytes back. */
  async verifyAndDestroy(bootBefore: string): Promise<void> {
    const booted = await this.bootId();
    expect(booted).not.toBe(bootBefore);
    expect((await this.stack!.outputs()).verifiedBootId.value).toBe(booted);
    const line = await this.sh("cat /proc/cmdline");
    expect(line).toMatch(/(^| )intel_iommu=on( |$)/);
    expect(line).toMatch(/(^| )iommu=pt( |$)/);
    expect(line).not.toContain("intel_iommu=off");
    expect(await this.drivers()).toEqual(["vfio-pci", "vfio-pci", "vfio-pci", "vfio-pci"]);
    expect(await this.sh(`${this.flavour.listing} | grep -cE 'vfio-pci\\.ko|modprobe\\.d/vfio\\.conf'`)).toMatch(/^[2-9]/);
    expect((await this.onLab((h) => h.readFile("/etc/modprobe.d/vfio.conf")))!.toString()).toContain(`options vfio-pci ids=${LAB_USB_CONTROLLER_IDS.join(",")}`);

    const current = this.flavour.trialLeftovers ? await this.trialChecks(booted) : booted;

    const again = await this.timings.timed("no-op up", () => this.stack!.up());
    expect(Object.keys(again.summary.resourceChanges ?? {})).toEqual(["same"]);
    expect(await this.bootId()).toBe(current);

    const destroy = await this.timings.timed("destroy", () => this.stack!.destroy({ onOutput: (chunk) => (this.output += chunk) }));
    expect(destroy.summary.result).toBe("succeeded");
    expect(await this.sourceBytes()).toEqual(this.original);
  }

  /** What the live boot reads and what a trial must leave as it was: every source file and the live images. */
  private async bootBytes(): Promise<Record<string, string>> {
    const images = (await this.sh('ls /boot/initrd.img-$(uname -r) /boot/efi/$(cat /etc/machine-id)/$(uname -r)/initrd*')).trim().split("\n");
    const hashes = await Promise.all(images.map(async (f) => [f, sha256Hex((await this.onLab((h) => h.readFile(f)))!)] as const));
    return { ...(await this.sourceBytes()), ...Object.fromEntries(hashes) };
  }

  /**
   * The change came up as a trial committed in place (the verified boot carries the trial's marker;
   * nothing of the trial is left); then a trial that panics (rdinit= names no file, so the kernel
   * mounts root= itself, cannot read LABEL= and panics) reboots into the previous configuration:
   * reported, every byte as before, nothing left; without the cause `up` converges without a reboot.
   */
  private async trialChecks(committed: string): Promise<string> {
    expect(await this.sh("cat /proc/cmdline")).toMatch(/(^| )vfio_host\.trial=[0-9a-f]{12}( |$)/);
    expect((await this.sh(this.flavour.trialLeftovers!)).trim()).toBe("");
    const before = await this.bootBytes();
    await setStackConfig(this.stack!, { kernelArgs: ["intel_iommu=on", "iommu=pt", "rdinit=/vfio-host-no-such-init"], acknowledgeBootCriticalArgs: ["rdinit"] });
    let output = "";
    await this.timings.timed("up: trial panics, falls back", () => expect(this.stack!.up({ onOutput: (chunk) => (output += chunk) })).rejects.toThrow());
    this.output += output;
    expect(output).toMatch(TRIAL_FELL_BACK);
    expect(output).toMatch(/The trial left no journal/);
    expect(fs.readFileSync(this.lab!.serialLog, "utf8")).toContain("Kernel panic - not syncing: VFS: Unable to mount root fs");
    const fallback = await this.bootId();
    expect(fallback).not.toBe(committed);
    expect(await this.sh("cat /proc/cmdline")).not.toMatch(/rdinit=|vfio_host\.trial=/);
    expect(await this.bootBytes()).toEqual(before);
    expect((await this.sh(this.flavour.trialLeftovers!)).trim()).toBe("");
    await setStackConfig(this.stack!, { kernelArgs: ["intel_iommu=on", "iommu=pt"], acknowledgeBootCriticalArgs: [] });
    expect((await this.timings.timed("up: cause removed", () => this.stack!.up())).summary.result).toBe("succeeded");
    expect(await this.bootId()).toBe(fallback);
    expect(await this.bootBytes()).toEqual(before);
    return fallback;
  }

  async close(): Promise<void> {
    console.log(`${this.flavour.flavor} lab, pulumi destroy:\n${this.output}`);
    this.timings.print(`${this.flavour.flavor} lab timings (lab: ${this.lab?.accel})`);
    fs.rmSync(path.join(projectRoot, `stacks/Pulumi.${this.stackName}.yaml`), { force: true });
    if (this.released) {
      await this.labSh("down");
      this.released();
    }
  }
}

/** Runs the work on each lab side by side; fails with the first failure only once all have settled. */
async function eachLab(labs: readonly FlavourLab[], work: (lab: FlavourLab) => Promise<void>): Promise<void> {
  const failed = (await Promise.allSettled(labs.map(work))).find((outcome) => outcome.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

afterAll(() => closeAllConnections());

test("the flavour labs: preview names each backend and every change; one fleet up reboots them in waves onto vfio-pci; a second up changes nothing; destroy gives every source file its bytes back", async () => {
  const backendDir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-lab-flavours-"));
  const labs = FLAVOURS.map((flavour) => new FlavourLab(flavour, backendDir));
  const timings = new StageTimes();
  let fleetOutput = "";
  try {
    await timings.timed("labs up, stacks written, previews", () => eachLab(labs, (lab) => lab.prepare()));
    const names = labs.map((lab) => lab.stackName);
    const bootsBefore = await Promise.all(labs.map((lab) => lab.bootId()));

    // Each status line names the stack and its state ("lab-e2e-extlinux (127.0.0.1:26201): up").
    // Both hosts' boots at the moment the first up has ended; and each host's checks, no-op up and
    // destroy, started as soon as its own up has ended (the first one's beside the second one's up).
    const running = new Set<string>();
    let firstEnded: { stack: string; boots: Promise<string[]> } | undefined;
    const finished = new Map<string, Promise<void>>();
    const onLine = (line: string) => {
      const { stack, state } = parseStatusLine(line) ?? {};
      if (stack === undefined || !names.includes(stack)) return;
      if (state === "up") running.add(stack);
      else if (running.delete(stack)) {
        const boots = Promise.all(labs.map((lab) => lab.bootId()));
        firstEnded ??= { stack, boots };
        const i = names.indexOf(stack);
        const done = boots.then(() => timings.timed(`${stack}: checks, no-op up, destroy`, () => labs[i].verifyAndDestroy(bootsBefore[i])));
        done.catch(() => undefined); // settled below, after the fleet
        if (state === "ok") finished.set(stack, done);
      }
    };
    const fleetEnv = { ...process.env, ...pulumiEnv(backendDir) };
    // sdboot-dracut first: its up is the longer one, and the other's up runs beside its checks and destroy.
    const run = await timings.timed("fleet up, reboots in waves", () => startFleet(["up", "--parallel", "2", "--max-rebooting", "1", ...names], fleetEnv, onLine).done);
    fleetOutput = run.output;
    const checks = await timings.timed("after the fleet: the checks, no-op ups and destroys still running", () => Promise.allSettled(finished.values()));
    expect(run.code).toBe(0);
    expect(run.output).toMatch(new RegExp(`reboot waves, at most 1 at once: .*${names[0]}.*; .*${names[1]}`));
    expect([...summaryRows(run.output).entries()].map(([name, row]) => `${name} ${row.result} reboot ${row.reboot}`)).toEqual(names.map((name) => `${name} ok reboot yes`));
    expect(mostAtOnce(run.output, "up")).toBe(1);
    // The real hosts: when the first up ended, its host was on a new boot and the other still on its old one.
    const first = names.indexOf(firstEnded!.stack);
    const bootsThen = await firstEnded!.boots;
    expect(bootsThen[first]).not.toBe(bootsBefore[first]);
    expect(bootsThen[1 - first]).toBe(bootsBefore[1 - first]);
    expect([...finished.keys()].sort()).toEqual([...names].sort());
    const failed = checks.find((outcome) => outcome.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  } finally {
    console.log(`npm run fleet -- up, both labs:\n${fleetOutput}`);
    await Promise.allSettled(labs.map((lab) => lab.close()));
    timings.print("flavour labs, stage times");
    fs.rmSync(backendDir, { recursive: true, force: true });
  }
});
