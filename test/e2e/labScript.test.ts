// lab.sh's boot loop, with a stand-in QEMU (test/standins/qemu-system-x86_64) whose guest kernel
// panics at once. The panic of the kernel's timer check, which a TCG guest starved of CPU hits
// now and then (seen in CI on the sdboot-dracut lab), is booted again, at most three times; any
// other panic fails at the first boot with the serial log, instead of waiting ten minutes for SSH.
// Every stand-in QEMU is stopped by its PID. The image and overlay are the real ones.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { projectRoot } from "./pulumiEnv";

// `up` waits for the GRUB image when npm test is still building it in the background.
jest.setTimeout(20 * 60_000);

const TIMER_CHECK_PANIC = "timer doesn't work through Interrupt-remapped IO-APIC";

/** `lab.sh up` on an instance of its own, with the stand-in QEMU first on PATH. */
function upWithPanic(panic: string): { status: number | null; stderr: string; starts: number; leftover: string[] } {
  const state = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-lab-script-"));
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-lab-qemu-"));
  try {
    fs.symlinkSync(path.join(projectRoot, "test/standins/qemu-system-x86_64"), path.join(bin, "qemu-system-x86_64"));
    const starts = path.join(state, "starts");
    const result = spawnSync("bash", [path.join(projectRoot, "scripts/lab/lab.sh"), "up"], {
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, LAB_STATE: state, LAB_FLAVOR: "grub", FAKE_PANIC: panic, FAKE_QEMU_STARTS: starts },
      encoding: "utf8",
    });
    // Processes still holding this instance's overlay on their command line, as lab.sh finds its VM.
    const leftover = fs.readdirSync("/proc").filter((pid) => {
      try {
        return /^\d+$/.test(pid) && fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(`file=${state}/overlay.qcow2,`);
      } catch {
        return false;
      }
    });
    const startCount = fs.existsSync(starts) ? fs.readFileSync(starts, "utf8").trim().split("\n").length : 0;
    return { status: result.status, stderr: result.stderr, starts: startCount, leftover };
  } finally {
    fs.rmSync(state, { recursive: true, force: true });
    fs.rmSync(bin, { recursive: true, force: true });
  }
}

test("a boot whose timer check panics is booted again, three times at most, each QEMU stopped", () => {
  const run = upWithPanic(TIMER_CHECK_PANIC);
  expect(run.starts).toBe(3);
  expect(run.status).toBe(1);
  expect(run.stderr.match(/the kernel's timer check failed after \d+s with \w+ \(a guest starved of CPU\)/g)).toHaveLength(3);
  expect(run.stderr).toContain("booting again (attempt 3 of 3)");
  expect(run.stderr).toMatch(/the lab did not boot\n$/);
  expect(run.leftover).toEqual([]);
});

test("any other panic fails at the first boot, with the serial log", () => {
  const run = upWithPanic("VFS: Unable to mount root fs on unknown-block(0,0)");
  expect(run.starts).toBe(1);
  expect(run.status).toBe(1);
  expect(run.stderr).toContain("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)");
  expect(run.stderr).toContain("the kernel panicked during boot (serial log above)");
  expect(run.stderr).not.toContain("booting again");
  expect(run.leftover).toEqual([]);
});
