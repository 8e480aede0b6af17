// HostReboot's pure half of trial boots: which trial the inputs ask for, when a staged change
// reboots, and the messages a failed trial ends with. The host half runs on the lab.
import fc from "fast-check";
import { StagedFile, TrialOptions, trialId } from "../../../providers/bootTrial/plan";
import { decideReboot, failedBootMessage, FailedVerification, trialFellBackMessage, trialNoNewBootMessage, effectiveTrial } from "../../../providers/reboot/resource";

const LABEL = "root@192.0.2.10";
const RELEASE = "6.1.0-57-amd64";
const OPTIONS: TrialOptions = { panicSeconds: 10, watchdogSeconds: 300 };
const REPLACE = "`pulumi up --replace URN` (this HostReboot's URN, from `pulumi stack --show-urns`)";

const grubFile: StagedFile = {
  path: "/etc/default/grub",
  beforeSha256: "a".repeat(64),
  after: 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n',
};
const modprobeFile: StagedFile = { path: "/etc/modprobe.d/vfio.conf", beforeSha256: null, after: "options vfio-pci ids=8086:3a67\n" };
const trialInputs = { release: RELEASE, buildImage: true, options: OPTIONS };

const connection = { host: "192.0.2.10", port: 22, user: "root", hostKey: "SHA256:" + "A".repeat(43), privateKey: "key" };
/** HostReboot's inputs as check hands them on: every default filled in. */
const checked = {
  connection,
  triggers: [{ backend: "grub" }],
  expectArgs: ["intel_iommu=on", "iommu=pt"],
  expectVfioDevices: ["0000:00:1a.0"],
  timeoutSeconds: 900,
  staged: [grubFile, modprobeFile],
  trial: trialInputs,
};
const trial = effectiveTrial(checked.staged, checked.trial)!;

describe("effectiveTrial", () => {
  it("is the trial of the staged files, named by their trialId", () => {
    expect(trial).toEqual({ id: trialId(checked.staged, RELEASE, true, OPTIONS), files: checked.staged, release: RELEASE, buildImage: true, options: OPTIONS });
    expect(trial.id).toMatch(/^[0-9a-f]{12}$/);
  });

  it("is no trial when nothing is staged and the image lacks nothing", () => {
    expect(effectiveTrial([], { ...trialInputs, buildImage: false })).toBeUndefined();
  });

  it("names the same trial whatever order the files come in", () => {
    expect(effectiveTrial([modprobeFile, grubFile], checked.trial)!.id).toBe(trial.id);
  });
});

describe("decideReboot with staged files", () => {
  const failed: FailedVerification = {
    bootId: "b3",
    previousBootId: "b2",
    problems: [`trial ${trial.id} fell back`],
    at: "2026-12-01T04:00:00.000Z",
    trial: trial.id,
  };
  const recorded = { ...checked, observed: { bootId: "b1" }, __provider: "serialized" };

  it("reboots for a change of what is staged or of the trial", () => {
    const changed = [
      { ...checked, staged: [{ ...grubFile, after: grubFile.after.replace("iommu=pt", "iommu=pt pcie_acs_override=downstream") }, modprobeFile] },
      { ...checked, staged: [grubFile] },
      { ...checked, staged: [] },
      { ...checked, trial: { ...trialInputs, options: { ...OPTIONS, watchdogSeconds: 0 } } },
      { ...checked, trial: { ...trialInputs, release: "6.1.0-58-amd64" } },
      { ...checked, trial: { ...trialInputs, buildImage: false } },
      { ...checked, trial: undefined },
    ];
    for (const news of changed) {
      expect(decideReboot(recorded, news)).toEqual({ kind: "reboot" });
      expect(decideReboot({ ...recorded, failedVerification: failed }, news)).toEqual({ kind: "reboot" });
    }
  });

  it("looks at the boot again, without rebooting, after a recorded trial failure and the same staged files", () => {
    expect(decideReboot({ ...recorded, failedVerification: failed }, checked)).toEqual({ kind: "recheck", failed });
    expect(decideReboot({ ...recorded, failedVerification: failed }, { ...checked, timeoutSeconds: 60 })).toEqual({ kind: "recheck", failed });
  });

  it("does nothing for the same staged files without a recorded failure", () => {
    expect(decideReboot(recorded, { ...checked, __provider: "serialized" })).toEqual({ kind: "nothing" });
    // A copy, not the same objects: the state comes back deserialized.
    expect(decideReboot(JSON.parse(JSON.stringify(recorded)), checked)).toEqual({ kind: "nothing" });
  });

  // The comment on REBOOT_KEYS: "a new key or timeout is recorded without one". State written before
  // trial boots has no `staged`; check fills in `staged: []` for a stack with trials off.
  it("does not reboot a host whose state predates trial boots when nothing is staged", () => {
    const { staged: _s, trial: _t, ...beforeTrials } = recorded;
    expect(decideReboot(beforeTrials, { ...checked, staged: [], trial: undefined })).toEqual({ kind: "nothing" });
  });
});

describe("the trial messages", () => {
  const log = "The trial boot's last warnings (journalctl -b -1 -p warning):\n    [    2.104] kernel: vfio-pci 0000:00:1a.0: BAR 0: can't reserve";

  it("say that a trial fell back, that nothing was made permanent, what the trial logged and how to retry", () => {
    expect(trialFellBackMessage(LABEL, trial, "b3", log)).toBe(
      `${LABEL}: the trial boot failed; the host is back on its previous configuration; nothing was made permanent.\n` +
        `  Trial ${trial.id}: boot b3 came up without vfio_host.trial=${trial.id} on its command line and the boot loader's one-shot was spent ` +
        "(the trial panicked, hung until the watchdog reset it, or was power-cycled).\n" +
        `  ${log}\n` +
        "  The trial's boot entry and initramfs were removed. Not retrying without a change: fix the cause and run `pulumi up`, or retry the " +
        `same trial with ${REPLACE}.\n` +
        "  A healthy boot that is slow to answer over SSH ends like this too: raise vfio-host:trialWatchdogSeconds (now 300).",
    );
  });

  it("name the watchdog only when the trial had one", () => {
    const unwatched = effectiveTrial(checked.staged, { ...trialInputs, options: { ...OPTIONS, watchdogSeconds: 0 } })!;
    const message = trialFellBackMessage(LABEL, unwatched, "b3", log);
    expect(message).not.toContain("trialWatchdogSeconds");
    expect(message.endsWith(`retry the same trial with ${REPLACE}.`)).toBe(true);
  });

  it("tell the owner of a trial that never answered to power-cycle it into the previous configuration", () => {
    expect(trialNoNewBootMessage(LABEL, trial, 900)).toBe(
      `${LABEL} did not come back within 900s after booting trial ${trial.id}. Power-cycle it: it will boot the previous configuration ` +
        "(the boot loader spent its one-shot starting the trial; if its console shows it still in the firmware or the loader, wait: a power cut " +
        "before the loader starts the trial boots it once more). Then run `pulumi up`: it finds the previous configuration, removes the trial and reports the failure " +
        "without rebooting.",
    );
  });

  it("report a recorded trial failure as the trial's, on the previous configuration, whenever it is reported", () => {
    const failed: FailedVerification = { bootId: "b3", previousBootId: "b2", problems: [`trial ${trial.id} fell back`], at: "2026-12-01T04:00:00.000Z", trial: trial.id };
    const expected =
      `${LABEL}: trial boot ${trial.id} failed (checked 2026-12-01T04:00:00.000Z); the host is on its previous configuration and nothing was made permanent:\n` +
      `  trial ${trial.id} fell back\n` +
      `Not retrying without a change: fix the cause and run \`pulumi up\`, or retry the same trial with ${REPLACE}.`;
    expect(failedBootMessage(LABEL, failed, "again")).toBe(expected);
    expect(failedBootMessage(LABEL, failed, "now")).toBe(expected);
    expect(failedBootMessage(LABEL, { ...failed, bootId: null, problems: ["no new boot_id within 900s"] }, "again")).toContain(
      `trial boot ${trial.id} failed (checked 2026-12-01T04:00:00.000Z)`,
    );
  });
});

describe("effectiveTrial properties", () => {
  const staged = fc.uniqueArray(
    fc.record({
      path: fc.constantFrom("/etc/default/grub", "/etc/initramfs-tools/modules", "/etc/modprobe.d/vfio.conf"),
      beforeSha256: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: null }),
      after: fc.string(),
    }),
    { selector: (f) => f.path, minLength: 1 },
  );

  it("a trial exists exactly when trials are on and something is staged or the image lacks modules, carries those files, and builds an image for anything but /etc/default/grub", () => {
    fc.assert(
      fc.property(fc.option(staged, { nil: [] as StagedFile[] }), fc.boolean(), fc.boolean(), (files, on, buildImage) => {
        const found = on ? effectiveTrial(files, { ...trialInputs, buildImage }) : undefined;
        if (!on || (files.length === 0 && !buildImage)) return expect(found).toBeUndefined();
        const image = buildImage || files.some((f) => f.path !== "/etc/default/grub");
        expect(found).toEqual({ id: trialId(files, RELEASE, image, OPTIONS), files, release: RELEASE, buildImage: image, options: OPTIONS });
      }),
    );
  });
});

describe("effectiveTrial on a host", () => {
  const grub: StagedFile = { path: "/etc/default/grub", beforeSha256: null, after: "GRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\"\n" };
  const modules: StagedFile = { path: "/etc/initramfs-tools/modules", beforeSha256: null, after: "vfio\n" };

  it("leaves out what an earlier trial already committed, so a command line change alone boots the live image", () => {
    const trial = effectiveTrial([grub, modules], { ...trialInputs, buildImage: false }, (f) => f === modules)!;
    expect(trial.files).toEqual([grub]);
    expect(trial.buildImage).toBe(false);
    expect(trial.id).toBe(trialId([grub], RELEASE, false, OPTIONS));
  });

  it("has nothing to boot when every staged file is in place and the live image lacks nothing", () => {
    expect(effectiveTrial([grub, modules], { ...trialInputs, buildImage: false }, () => true)).toBeUndefined();
    expect(effectiveTrial([grub], { ...trialInputs, buildImage: true }, () => true)).toMatchObject({ files: [], buildImage: true });
  });
});
