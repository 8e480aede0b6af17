// Trial boots on systemd-boot, the pure half: which hosts run them, the trial's loader entry, the
// check of `bootctl list` before the one-shot is armed, and the files a trial may stage.
import * as fs from "fs";
import * as path from "path";
import fc from "fast-check";
import {
  bootctlListsAsDefault,
  isImageInput,
  renderSdbootTrialEntry,
  SdbootTrialFacts,
  sdbootTrialEntryName,
  sdbootTrialImage,
  sdbootTrialUnsupported,
  StagedFileSchema,
  trialOnlyArgs,
  trialPlanLine,
  trialSupport,
} from "../../../providers/bootTrial/plan";
import { Staging, stagingFor } from "../../../providers/bootTrial/host";
import { ownEntries } from "../../../providers/kernelCmdline/bootConfig";
import { LOADER_NAMES } from "../../../providers/kernelCmdline/bootedLoader";
import { parseLoaderEntry } from "../../../providers/kernelCmdline/loaderEntries";
import { bookwormSupportFacts } from "./fixtures";

const ID = "3f9a0c7e12b4";
const RELEASE = "6.1.0-18-amd64";
const fixture = (name: string) => fs.readFileSync(path.join(__dirname, "fixtures", name), "utf8");
/** kernel-install's entry on Debian 12 (systemd 252), as in test/unit/kernelCmdline/fixtures. */
const ENTRY = fs.readFileSync(path.join(__dirname, "../kernelCmdline/fixtures/debian12-systemd-boot-entry.conf"), "utf8");
const ENTRY_PATH = "/boot/efi/loader/entries/3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f-6.1.0-18-amd64.conf";
const ARGS = trialOnlyArgs(ID, { panicSeconds: 10, watchdogSeconds: 300 });

const sdbootFacts: SdbootTrialFacts = { booted: "systemd-boot", commands: ["bootctl", "dracut", "kernel-install"], efivars: true, entries: [{ path: ENTRY_PATH, text: ENTRY }] };

describe("sdbootTrialUnsupported", () => {
  it("has nothing against a Debian 12 host that boots systemd-boot with dracut", () => {
    expect(sdbootTrialUnsupported(sdbootFacts)).toBeUndefined();
  });

  it.each<[string, Partial<SdbootTrialFacts>, string]>([
    ["no EFI variables", { efivars: false }, "the EFI variables are not readable at /sys/firmware/efi/efivars, so systemd-boot's one-shot cannot be set"],
    ["no dracut (initramfs-tools)", { commands: ["bootctl"] }, "the host lacks dracut (trial boots on systemd-boot build their initramfs with dracut)"],
    ["no entry of its own", { entries: [] }, "systemd-boot has no loader entry of this installation"],
    [
      "entries without sort-key (systemd before 251)",
      { entries: [{ path: ENTRY_PATH, text: ENTRY.replace(/^sort-key.*\n/m, "") }] },
      "its loader entries carry no sort-key, so systemd-boot could pick a trial's entry as the default",
    ],
  ])("refuses a host with %s, in one sentence", (_, change, reason) => {
    expect(sdbootTrialUnsupported({ ...sdbootFacts, ...change })).toBe(reason);
  });
});

describe("trialSupport", () => {
  it("goes by the loader that booted the host: systemd-boot's trial there even with GRUB's files present (Proxmox)", () => {
    expect(trialSupport(bookwormSupportFacts, sdbootFacts)).toEqual({ loader: "systemd-boot" });
    expect(trialSupport(bookwormSupportFacts, { ...sdbootFacts, commands: ["bootctl"] })).toEqual({ unsupported: expect.stringContaining("lacks dracut") });
  });

  it("gives a host another loader booted no GRUB trial, though GRUB's files are there", () => {
    for (const booted of ["proxmox-boot-tool", "extlinux", "grubby-bls"] as const) {
      expect(trialSupport(bookwormSupportFacts, { ...sdbootFacts, booted })).toEqual({ unsupported: `its loader is ${LOADER_NAMES[booted]}; trial boots use GRUB's one-shot or systemd-boot's` });
    }
  });

  it("takes GRUB's trial on a host GRUB booted (or whose loader is not known), and its reasons otherwise", () => {
    for (const booted of ["grub", "unknown"] as const) {
      expect(trialSupport(bookwormSupportFacts, { ...sdbootFacts, booted })).toEqual({ loader: "grub" });
      expect(trialSupport({ ...bookwormSupportFacts, hasDefaultGrub: false }, { ...sdbootFacts, booted })).toEqual({
        unsupported: "its boot loader is not GRUB with /etc/default/grub and /boot/grub/grub.cfg",
      });
    }
  });
});

describe("renderSdbootTrialEntry", () => {
  const trial = renderSdbootTrialEntry(ENTRY, ID, ARGS, sdbootTrialImage(RELEASE));
  const parsed = parseLoaderEntry(trial);

  it("boots the same kernel with the entry's options and then the trial's, from the trial's image, under its own title", () => {
    const entry = parseLoaderEntry(ENTRY);
    expect(parsed.linux).toBe(entry.linux);
    expect(parsed.version).toBe(RELEASE);
    expect(parsed.options).toEqual([...entry.options, ARGS.join(" ")]);
    expect(parsed.initrd).toEqual([`/vfio-host-trial/initrd-${RELEASE}`]);
    expect(parsed.title).toBe(`vfio-host trial ${ID} (boots once)`);
  });

  it("has no sort-key, so every entry with one sorts before it and it is never the default", () => {
    expect(trial).not.toMatch(/^\s*sort-key/m);
    expect(ENTRY).toMatch(/^sort-key/m);
  });

  it("keeps every other line of the entry, and the live image when no trial image was built", () => {
    const same = renderSdbootTrialEntry(ENTRY, ID, ARGS, undefined);
    expect(parseLoaderEntry(same).initrd).toEqual(parseLoaderEntry(ENTRY).initrd);
    const kept = ENTRY.split("\n").filter((l) => l !== "" && !/^(title|sort-key|#)/.test(l));
    for (const line of kept) expect(same.split("\n")).toContain(line);
  });

  it("replaces only the last initrd line: microcode images come first", () => {
    const withMicrocode = ENTRY.replace(/^initrd /m, "initrd     /intel-ucode.img\ninitrd ");
    expect(parseLoaderEntry(renderSdbootTrialEntry(withMicrocode, ID, ARGS, sdbootTrialImage(RELEASE))).initrd).toEqual(["/intel-ucode.img", `/vfio-host-trial/initrd-${RELEASE}`]);
  });

  it("puts the trial's arguments last whatever the entry's options lines, or adds the line", () => {
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[a-z_]{1,8}(=[a-z0-9]{1,4})?$/), { maxLength: 3 }), fc.nat(3), (extra, lines) => {
        const entry = ENTRY.replace(/^options .*\n/m, Array.from({ length: lines }, (_, i) => `options ${extra.join(" ")} l${i}\n`).join(""));
        const options = parseLoaderEntry(renderSdbootTrialEntry(entry, ID, ARGS, undefined)).options;
        expect(options[options.length - 1]).toBe(ARGS.join(" "));
        expect(options).toHaveLength(lines + 1);
      }),
    );
  });

  it("refuses an entry that passes arguments to init, or has no kernel or initrd line to replace", () => {
    expect(() => renderSdbootTrialEntry(ENTRY.replace(/^options (.*)$/m, "options $1 -- single"), ID, ARGS, undefined)).toThrow(/arguments to init/);
    expect(() => renderSdbootTrialEntry(ENTRY.replace(/^linux .*\n/m, ""), ID, ARGS, undefined)).toThrow(/no linux line/);
    expect(() => renderSdbootTrialEntry(ENTRY.replace(/^initrd .*\n/m, ""), ID, ARGS, sdbootTrialImage(RELEASE))).toThrow(/no initrd line/);
  });

  it("is not one of the installation's entries, so no later plan edits or stages it", () => {
    const entries = [
      { path: ENTRY_PATH, text: ENTRY },
      { path: `/boot/efi/loader/entries/${sdbootTrialEntryName(ID)}`, text: trial },
    ];
    expect(ownEntries({ loaderEntries: entries, machineId: "3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f" }).map((e) => e.path)).toEqual([ENTRY_PATH]);
  });
});

describe("bootctlListsAsDefault", () => {
  // `bootctl list` on the sdboot-dracut lab (Debian 12, systemd 252.39) with a trial entry rendered by
  // renderSdbootTrialEntry written beside the lab's own, before any one-shot was set: it sorts after it.
  const list = fixture("bootctl-list-with-trial.txt");
  const trialName = /id: (vfio-host-trial-[0-9a-f]+\.conf)/.exec(list)![1];

  it("finds the trial's entry listed and not the default", () => {
    expect(list).toContain(trialName);
    expect(bootctlListsAsDefault(list, trialName)).toBe(false);
  });

  it("says so when the trial's entry is the default", () => {
    const asDefault = list.replace(/ \(default\)/g, "").replace(/(title: vfio-host trial [0-9a-f]+ \(boots once\))/, "$1 (default)");
    expect(bootctlListsAsDefault(asDefault, trialName)).toBe(true);
    expect(bootctlListsAsDefault(list, "vfio-host-trial-000000000000.conf")).toBe(false);
  });
});

describe("what a trial stages", () => {
  it("takes the loaders' sources, the initramfs inputs and loader entries on an ESP, nothing else", () => {
    const ok = [
      "/etc/default/grub",
      "/etc/kernel/cmdline",
      "/etc/initramfs-tools/modules",
      "/etc/modprobe.d/vfio.conf",
      "/etc/dracut.conf.d/90-vfio-host.conf",
      ENTRY_PATH,
      "/efi/loader/entries/fedora-6.8.conf",
      "/boot/loader/entries/a+3-0.conf",
    ];
    const refused = ["/etc/passwd", "/etc/kernel/cmdline.d/x", "/boot/efi/loader/loader.conf", "/boot/efi/../etc/loader/entries/x.conf", "loader/entries/x.conf", "/boot/efi/loader/entries/x.txt"];
    for (const p of ok) expect(StagedFileSchema.safeParse({ path: p, beforeSha256: null, after: "" }).success).toBe(true);
    for (const p of refused) expect({ p, ok: StagedFileSchema.safeParse({ path: p, beforeSha256: null, after: "" }).success }).toEqual({ p, ok: false });
  });

  it("builds a trial image for the initramfs inputs only", () => {
    expect(["/etc/initramfs-tools/modules", "/etc/modprobe.d/vfio.conf", "/etc/dracut.conf.d/90-vfio-host.conf"].every(isImageInput)).toBe(true);
    expect(["/etc/default/grub", "/etc/kernel/cmdline", ENTRY_PATH].some(isImageInput)).toBe(false);
  });
});

describe("stagingFor", () => {
  const sdboot: Staging = { stage: true, loader: "systemd-boot", line: trialPlanLine({ loader: "systemd-boot" }) };
  const none: Staging = { stage: false, line: trialPlanLine({ unsupported: "the host lacks dracut" }) };

  it("stages a resource's files for a trial on its own loader only (initramfs-tools on a systemd-boot host writes directly)", () => {
    expect(stagingFor(sdboot, "systemd-boot")).toBe(sdboot);
    expect(stagingFor(sdboot, "grub")).toEqual({ stage: false });
    expect(stagingFor(sdboot, undefined)).toEqual({ stage: false });
  });

  it("passes on why a host has no trial boot to resources that could stage, not to the others", () => {
    expect(stagingFor(none, "grub")).toBe(none);
    expect(stagingFor(none, undefined)).toEqual({ stage: false });
  });
});
