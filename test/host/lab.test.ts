// The lab VM proves on a real kernel what unit tests can only plan: an edited GRUB line takes
// effect after a reboot, and the emulated Intel IOMMU then puts the four USB controllers of slot
// 1d in one group, apart from the boot disk. Everything is slow under TCG, hence the timeouts.
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { Client } from "ssh2";
import { labInstanceEnv, LabState, labStatePath, lockLab, readLabState } from "../../scripts/lab/labState";

const labScript = path.join(__dirname, "../../scripts/lab/lab.sh");
const usbControllers = ["8086:2934", "8086:2935", "8086:2936", "8086:293a"];
const minutes = 60_000;
const labEnv = labInstanceEnv("host-test");

function lab(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)("bash", [labScript, ...args], { maxBuffer: 64 << 20, timeout: 30 * minutes, env: labEnv });
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** One connection per command; the server must present the host key lab.json pins. */
function ssh(lab: LabState, command: string, timeoutMs = 5 * minutes): Promise<Result> {
  const pinned = Buffer.from(lab.hostKey.split(" ")[1], "base64");
  return new Promise((resolve, reject) => {
    const client = new Client();
    let presented: Buffer | undefined;
    const timer = setTimeout(() => {
      client.end();
      reject(new Error(`\`${command}\` on the lab took longer than ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (error: Error) => {
      clearTimeout(timer);
      client.end();
      reject(
        presented && !presented.equals(pinned)
          ? new Error(`the lab presented host key ${presented.toString("base64")}, lab.json pins ${lab.hostKey}`)
          : error,
      );
    };
    client
      .on("ready", () =>
        client.exec(command, (error, channel) => {
          if (error) return fail(error);
          let stdout = "";
          let stderr = "";
          let code = -1;
          channel.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
          channel.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
          channel.on("exit", (status: number) => (code = status));
          channel.on("close", () => {
            clearTimeout(timer);
            client.end();
            resolve({ code, stdout, stderr });
          });
        }),
      )
      .on("error", fail)
      .connect({
        host: lab.host,
        port: lab.port,
        username: lab.user,
        privateKey: readFileSync(lab.privateKeyPath),
        readyTimeout: 20_000,
        hostVerifier: (key: Buffer) => {
          presented = key;
          return key.equals(pinned);
        },
      });
  });
}

async function run(lab: LabState, command: string): Promise<string> {
  const result = await ssh(lab, command);
  if (result.code !== 0) throw new Error(`\`${command}\` exited with ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** A reboot is over when SSH answers again with a different boot_id. */
async function waitForNewBoot(lab: LabState, previousBootId: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const bootId = await ssh(lab, "cat /proc/sys/kernel/random/boot_id", 30_000).then(
      (result) => result.stdout.trim(),
      () => "",
    );
    if (bootId && bootId !== previousBootId) return bootId;
    if (Date.now() > deadline) throw new Error(`the lab did not come back within ${timeoutMs} ms of the reboot`);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
}

/** "group address vendor device" lines from /sys/kernel/iommu_groups, as group -> "vvvv:dddd" ids. */
function parseIommuGroups(listing: string): Map<string, { address: string; id: string }[]> {
  const groups = new Map<string, { address: string; id: string }[]>();
  for (const line of listing.trim().split("\n").filter(Boolean)) {
    const [group, address, vendor, device] = line.split(" ");
    const id = `${vendor.replace(/^0x/, "")}:${device.replace(/^0x/, "")}`;
    groups.set(group, [...(groups.get(group) ?? []), { address, id }]);
  }
  return groups;
}

const listIommuGroups =
  'for d in /sys/kernel/iommu_groups/*/devices/*; do [ -e "$d" ] || continue; g=${d%/devices/*}; ' +
  'echo "${g##*/} ${d##*/} $(cat "$d/vendor") $(cat "$d/device")"; done';

/** Running (not zombie) processes whose command line contains `needle`, from /proc. */
function liveProcessesWith(needle: string): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        return !/^\d+ \(.*\) Z /.test(stat) && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(needle);
      } catch {
        return false; // gone while we looked
      }
    })
    .map(Number);
}

describe("lab host: a Debian VM with an emulated Intel IOMMU", () => {
  let state: LabState;
  let unlock: (() => void) | undefined;

  beforeAll(async () => {
    unlock = await lockLab(labStatePath(labEnv));
    // Reset first: a pristine overlay, rebooted when it was running, else booted by `up`.
    await lab("reset");
    await lab("up");
    state = readLabState(labStatePath(labEnv));
  }, 30 * minutes);

  afterAll(async () => {
    await lab("down");
    unlock?.();
  }, 5 * minutes);

  it("answers `lab ssh -- lspci -nn` with the four ICH9 USB controllers", async () => {
    const { stdout } = await lab("ssh", "--", "lspci", "-nn");
    for (const id of usbControllers) expect(stdout).toContain(`[${id}]`);
  });

  it("starts like an unconfigured host: IOMMU off, no groups", async () => {
    const out = await run(state, `cat /proc/cmdline; echo ---; grep '^GRUB_CMDLINE_LINUX_DEFAULT=' /etc/default/grub; echo ---; ${listIommuGroups}`);
    const [cmdline, grubLine, groups] = out.split("---\n");
    expect(cmdline.split(" ")).toContain("intel_iommu=off");
    expect(grubLine.trim()).toBe('GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=off console=ttyS0"');
    expect(groups.trim()).toBe("");
  });

  it(
    "boots with intel_iommu=on after editing /etc/default/grub, the USB controllers alone in one group",
    async () => {
      await run(state, "sed -i 's/intel_iommu=off/intel_iommu=on/' /etc/default/grub && update-grub");
      const before = (await run(state, "cat /proc/sys/kernel/random/boot_id")).trim();
      // Detached, so the reboot does not cut the session that asked for it.
      await run(state, "systemd-run --on-active=1 systemctl reboot");
      const started = Date.now();
      await waitForNewBoot(state, before, 10 * minutes);
      console.log(`lab reboot (${state.accel}): ${Math.round((Date.now() - started) / 1000)} s to SSH`);

      const out = await run(state, `cat /proc/cmdline; echo ---; readlink -f /sys/block/vda; echo ---; ${listIommuGroups}`);
      const [cmdline, diskPath, listing] = out.split("---\n");
      expect(cmdline.split(" ")).toContain("intel_iommu=on");

      const groups = parseIommuGroups(listing);
      const usbGroups = [...groups].filter(([, devices]) => devices.some((d) => usbControllers.includes(d.id)));
      expect(usbGroups).toHaveLength(1);
      const [usbGroup, usbDevices] = usbGroups[0];
      expect(usbDevices.map((d) => d.id).sort()).toEqual(usbControllers);

      const diskController = /([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\/virtio\d+\/block\/vda/.exec(diskPath)?.[1];
      expect(diskController).toBeDefined();
      const diskGroup = [...groups].find(([, devices]) => devices.some((d) => d.address === diskController))?.[0];
      expect(diskGroup).toBeDefined();
      expect(diskGroup).not.toBe(usbGroup);
    },
    20 * minutes,
  );

  it(
    "`down` stops the VM by its recorded PID and leaves no QEMU behind",
    async () => {
      await lab("down");
      // The recorded PID's command line names the overlay, so this also covers state.pid.
      expect(liveProcessesWith(`file=${state.overlay},`)).toEqual([]);
      expect(existsSync(labStatePath(labEnv))).toBe(false);
    },
    5 * minutes,
  );
});
