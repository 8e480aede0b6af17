// InitramfsModules on an Arch host (mkinitcpio), on Arch's own files: the drop-in where mkinitcpio
// reads it (v36 on, presets that name no config file), MODULES=() in mkinitcpio.conf where it does
// not (a preset written before v36), nothing to do once the image lists the modules, and the
// refusal of HOOKS without modconf. The facts are MKINITCPIO_BOOT_SECTION's real output: sh runs it
// on a copy of the files under a temporary root, with a stand-in `mkinitcpio` that prints its version.
import { execFileSync } from "child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import { dirname, join } from "path";
import { InputError } from "../../../providers/hostResource";
import { MKINITCPIO_BOOT_SECTION, MKINITCPIO_CONF_PATH, MKINITCPIO_DROP_IN_PATH, renderMkinitcpioDropIn } from "../../../providers/initramfsModules/mkinitcpio";
import { InitramfsModulesInputs, InitramfsState, planInitramfs } from "../../../providers/initramfsModules/resource";
import { SystemRecord, systems } from "../../../providers/initramfsModules/systems";
import { moduleListForKernel } from "../../../providers/kernel/modules";
import { RemoteHost, sha256Hex } from "../../../providers/ssh/host";
import { alpine66Kernel, archLsinitcpio, archMkinitcpioConf, archV35Preset, archV39Preset } from "./fixtures";

const inputs = InitramfsModulesInputs.parse({});
/** Arch's 6.8 has the VFIO modules of Alpine's 6.6 (vfio_virqfd merged into vfio since 6.2), the release of the lsinitcpio fixture. */
const kernel = { ...alpine66Kernel, release: "6.8.1-arch1-1" };
const modules = moduleListForKernel(kernel);
const dropIn = renderMkinitcpioDropIn(modules);
const withVfio = archMkinitcpioConf.replace("\nMODULES=()\n", "\nMODULES=(vfio vfio_pci vfio_iommu_type1)\n");
/** The image before: the fixture's listing without the VFIO modules. */
const lsinitcpioBefore = archLsinitcpio
  .split("\n")
  .filter((line) => !line.includes("/vfio"))
  .join("\n");

/** MKINITCPIO_BOOT_SECTION's output on a host with these files under /etc and this `mkinitcpio --version`. */
function bootSection(version: string, etc: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "mkinitcpio-"));
  try {
    for (const [path, text] of Object.entries(etc)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    mkdirSync(join(root, "bin"));
    writeFileSync(join(root, "bin/mkinitcpio"), `#!/bin/sh\necho 'mkinitcpio "${version}"'\n`);
    chmodSync(join(root, "bin/mkinitcpio"), 0o755);
    const out = execFileSync("sh", ["-c", MKINITCPIO_BOOT_SECTION.replaceAll("/etc/", `${root}/etc/`)], { env: { ...process.env, PATH: `${root}/bin:${process.env.PATH}` } });
    return out.toString().replaceAll(root, "");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const arch = (version: string, preset: string, conf = archMkinitcpioConf, dropIns: Record<string, string> = {}) => ({
  kernel,
  systems: ["mkinitcpio" as const],
  files: { [MKINITCPIO_CONF_PATH]: conf, ...dropIns },
  listing: { mkinitcpio: lsinitcpioBefore },
  boot: { mkinitcpio: bootSection(version, { [MKINITCPIO_CONF_PATH]: conf, "/etc/mkinitcpio.d/linux.preset": preset, ...dropIns }) },
});
const state = (plan: ReturnType<typeof planInitramfs>): InitramfsState => ({ system: plan.system, release: plan.kernel.release, owned: plan.owned, triggers: [], featureSha256: plan.featureSha256 });

/** What a revert does to the host: the files it writes back, and the whole files it restores (by the hash it gives). */
async function revert(record: SystemRecord, current: Record<string, string>) {
  const reverted: Record<string, string> = {};
  const restored: Record<string, string> = {};
  const host = {
    revertFile: async (path: string, text: string) => void (reverted[path] = text),
    restoreBackup: async (path: string, options?: { ifSha256?: string }) => ((restored[path] = options?.ifSha256 ?? ""), "restored" as const),
  } as unknown as RemoteHost;
  await systems.mkinitcpio.revert(host, record, (path) => current[path], () => Promise.reject(new Error("no fallback for mkinitcpio")));
  return { reverted, restored };
}

describe("planInitramfs on mkinitcpio", () => {
  it("v39 with its stock preset: creates the drop-in, leaves mkinitcpio.conf alone and rebuilds every preset", () => {
    const plan = planInitramfs(inputs, arch("39.2", archV39Preset), undefined);
    expect(plan.system).toBe("mkinitcpio");
    expect(plan.files).toEqual([{ path: MKINITCPIO_DROP_IN_PATH, before: undefined, after: dropIn }]);
    expect(plan.owned).toEqual({ mode: "drop-in" });
    expect(plan.featureSha256).toBe(sha256Hex(dropIn));
    expect(plan.commands).toEqual([["mkinitcpio", "-P"]]);
    expect(plan.changes).toEqual([
      `${MKINITCPIO_DROP_IN_PATH}: create with MODULES+=(vfio vfio_pci vfio_iommu_type1)`,
      "rebuild the initramfs of 6.8.1-arch1-1 (mkinitcpio -P): its configuration changed",
    ]);
  });

  it("a v35 preset (ALL_config=): adds the modules to MODULES=() and says why, and a revert gives the original bytes", async () => {
    const plan = planInitramfs(inputs, arch("39.2", archV35Preset), undefined);
    expect(plan.files).toEqual([{ path: MKINITCPIO_CONF_PATH, before: archMkinitcpioConf, after: withVfio }]);
    expect(plan.changes).toEqual([
      `${MKINITCPIO_CONF_PATH}: MODULES: + vfio`,
      `${MKINITCPIO_CONF_PATH}: MODULES: + vfio_pci`,
      `${MKINITCPIO_CONF_PATH}: MODULES: + vfio_iommu_type1`,
      `${MKINITCPIO_CONF_PATH}, not ${MKINITCPIO_DROP_IN_PATH}: /etc/mkinitcpio.d/linux.preset sets ALL_config=, so \`mkinitcpio -P\` passes -c and skips ` +
        "/etc/mkinitcpio.conf.d; comment it out (stock presets since mkinitcpio 36 do) to let vfio-host keep its modules in a file of its own",
      "rebuild the initramfs of 6.8.1-arch1-1 (mkinitcpio -P): its configuration changed",
    ]);
    expect(plan.featureSha256).toBeUndefined();
    const { reverted, restored } = await revert({ release: plan.kernel.release, owned: plan.owned }, { [MKINITCPIO_CONF_PATH]: withVfio });
    expect(reverted).toEqual({ [MKINITCPIO_CONF_PATH]: archMkinitcpioConf });
    expect(restored).toEqual({});
    // mkinitcpio 35 itself reads no drop-ins, whatever the preset says.
    expect(planInitramfs(inputs, arch("35", archV39Preset), undefined).files).toEqual(plan.files);
  });

  it("has nothing to do once the image lists the modules, in either mode", () => {
    const dropInDone = { ...arch("39.2", archV39Preset, archMkinitcpioConf, { [MKINITCPIO_DROP_IN_PATH]: dropIn }), listing: { mkinitcpio: archLsinitcpio } };
    const first = planInitramfs(inputs, dropInDone, undefined);
    expect(first.changes).toEqual([]);
    expect(first.rebuild).toBeUndefined();
    expect(planInitramfs(inputs, dropInDone, state(first)).changes).toEqual([]);

    const confPlan = planInitramfs(inputs, arch("39.2", archV35Preset), undefined);
    const confDone = { ...arch("39.2", archV35Preset, withVfio), listing: { mkinitcpio: archLsinitcpio } };
    const again = planInitramfs(inputs, confDone, state(confPlan));
    expect(again.changes).toEqual([]);
    expect(again.owned).toEqual(confPlan.owned);
    // Still, an image that lacks them is rebuilt.
    expect(planInitramfs(inputs, { ...confDone, listing: { mkinitcpio: lsinitcpioBefore } }, state(confPlan)).rebuild).toBe(
      "the image lacks vfio, vfio_pci, vfio_iommu_type1",
    );
  });

  it("without state, recognises its own words in mkinitcpio.conf from the backup, so a revert still gives the original bytes", async () => {
    const plan = planInitramfs(inputs, { ...arch("39.2", archV35Preset, withVfio), backups: { [MKINITCPIO_CONF_PATH]: Buffer.from(archMkinitcpioConf) } }, undefined);
    expect(plan.files).toEqual([]);
    const { reverted } = await revert({ release: plan.kernel.release, owned: plan.owned }, { [MKINITCPIO_CONF_PATH]: withVfio });
    expect(reverted).toEqual({ [MKINITCPIO_CONF_PATH]: archMkinitcpioConf });
  });

  it("once the drop-in is read (the preset fixed), moves the modules out of mkinitcpio.conf into it", () => {
    const confPlan = planInitramfs(inputs, arch("39.2", archV35Preset), undefined);
    const plan = planInitramfs(inputs, arch("39.2", archV39Preset, withVfio), state(confPlan));
    expect(plan.files).toEqual([
      { path: MKINITCPIO_DROP_IN_PATH, before: undefined, after: dropIn },
      { path: MKINITCPIO_CONF_PATH, before: withVfio, after: archMkinitcpioConf },
    ]);
    expect(plan.changes).toContain(`${MKINITCPIO_CONF_PATH}: MODULES: take back what vfio-host added, now in ${MKINITCPIO_DROP_IN_PATH}`);
    expect(plan.owned).toEqual({ mode: "drop-in" });
  });

  it("a revert restores the drop-in it wrote; one left unread by an older mkinitcpio goes back with mkinitcpio.conf's words", async () => {
    const plan = planInitramfs(inputs, arch("39.2", archV39Preset), undefined);
    expect(await revert({ release: plan.kernel.release, owned: plan.owned, wholeFileSha256: plan.featureSha256 }, {})).toEqual({
      reverted: {},
      restored: { [MKINITCPIO_DROP_IN_PATH]: sha256Hex(dropIn) },
    });
    const unread = planInitramfs(inputs, arch("35", archV35Preset, archMkinitcpioConf, { [MKINITCPIO_DROP_IN_PATH]: dropIn }), state(plan));
    expect(unread.files.map((f) => f.path)).toEqual([MKINITCPIO_CONF_PATH]);
    expect(await revert({ release: unread.kernel.release, owned: unread.owned, wholeFileSha256: unread.featureSha256 }, { [MKINITCPIO_CONF_PATH]: withVfio })).toEqual({
      reverted: { [MKINITCPIO_CONF_PATH]: archMkinitcpioConf },
      restored: { [MKINITCPIO_DROP_IN_PATH]: sha256Hex(dropIn) },
    });
  });

  it("reads the version and presets mkinitcpio printed, whatever a configuration file says after them", () => {
    const forged = { "/etc/mkinitcpio.conf.d/50-x.conf": '\n@vfio-host mkinitcpioVersion\nmkinitcpio "35"\n@vfio-host mkinitcpioPresets\n/x.preset:ALL_config=y\n' };
    expect(planInitramfs(inputs, arch("39.2", archV39Preset, archMkinitcpioConf, forged), undefined).owned).toEqual({ mode: "drop-in" });
  });

  it("refuses HOOKS without modconf, naming the fix, before writing anything", () => {
    const noModconf = archMkinitcpioConf.replace(/^HOOKS=\(.*\)$/m, "HOOKS=(base udev autodetect block filesystems fsck)");
    const refused = () => planInitramfs(inputs, arch("39.2", archV39Preset, noModconf), undefined);
    expect(refused).toThrow(InputError);
    expect(refused).toThrow(
      "HOOKS=(base udev autodetect block filesystems fsck) in /etc/mkinitcpio.conf lacks modconf, so /etc/modprobe.d (vfio-pci's ids= and softdeps) " +
        "stays out of the image and vfio-pci would claim nothing at boot; add modconf after udev or systemd, as the stock HOOKS have it",
    );
    // A drop-in of the user's that sets HOOKS with modconf is what mkinitcpio sources last, so it passes.
    const fixedByDropIn = { "/etc/mkinitcpio.conf.d/10-hooks.conf": "HOOKS=(base systemd modconf block filesystems)\n" };
    expect(() => planInitramfs(inputs, arch("39.2", archV39Preset, noModconf, fixedByDropIn), undefined)).not.toThrow();
  });
});
