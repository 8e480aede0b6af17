import fc from "fast-check";
import {
  bootedTrial,
  customCfgWithoutTrial,
  customCfgWithTrial,
  firstMenuEntry,
  renderTrialEntry,
  StagedFile,
  TrialOptions,
  TrialOptionsSchema,
  trialId,
  trialOnlyArgs,
  trialPlanLine,
  trialUnsupported,
} from "../../../providers/bootTrial/plan";
import { parseKernelArgs } from "../../../providers/kernel/cmdline";
import { grubScriptCharacter } from "../../../providers/kernelCmdline/schema";
import { kernelLine } from "../kernelCmdline/arbitraries";
import { BOOKWORM_RELEASE, bookwormFirstEntry, bookwormGrubCfg, bookwormSupportFacts } from "./fixtures";

const ID = "3f9a0c7e12b4";
const DEFAULTS: TrialOptions = { panicSeconds: 10, watchdogSeconds: 300 };
const BEGIN = `### BEGIN vfio-host trial ${ID} (removed when the trial is committed or falls back) ###`;
const END = "### END vfio-host trial ###";

/** grub.cfg with one /etc/grub.d script's block cut out, as on a host where that script is missing. */
const withoutScript = (cfg: string, script: string) => cfg.replace(new RegExp(`### BEGIN /etc/grub.d/${script} ###\\n[\\s\\S]*?### END /etc/grub.d/${script} ###\\n`), "");

describe("trialUnsupported", () => {
  it("has nothing against the Debian bookworm lab host", () => {
    expect(trialUnsupported(bookwormSupportFacts)).toBeUndefined();
  });

  it("names each reason a host cannot boot a change once first", () => {
    const cases: [Partial<typeof bookwormSupportFacts>, string][] = [
      [{ hasDefaultGrub: false }, "its boot loader is not GRUB with /etc/default/grub and /boot/grub/grub.cfg"],
      [{ grubCfg: undefined }, "its boot loader is not GRUB with /etc/default/grub and /boot/grub/grub.cfg"],
      [
        { grubCfg: bookwormGrubCfg.replace(/if \[ "\$\{next_entry\}" \] ; then\n[\s\S]*?\nelse\n {3}set default="0"\nfi\n/, 'set default="0"\n') },
        "/boot/grub/grub.cfg has no next_entry (one-shot) block; run update-grub",
      ],
      [
        { grubCfg: withoutScript(bookwormGrubCfg, "41_custom") },
        "/boot/grub/grub.cfg does not read custom.cfg (/etc/grub.d/41_custom is missing or not executable)",
      ],
      [{ grubenvSize: undefined }, "/boot/grub/grubenv is missing (grub-editenv /boot/grub/grubenv create)"],
      [{ grubenvSize: 0 }, "/boot/grub/grubenv is not a 1024-byte environment block (grub-editenv /boot/grub/grubenv create)"],
      [{ grubenvSize: 4096 }, "/boot/grub/grubenv is not a 1024-byte environment block (grub-editenv /boot/grub/grubenv create)"],
      [{ bootFs: "btrfs\n" }, "/boot/grub is on btrfs, where GRUB cannot clear its one-shot"],
      [{ bootFs: "zfs\n" }, "/boot/grub is on zfs, where GRUB cannot clear its one-shot"],
      [{ bootAbstraction: "lvm\n" }, "/boot/grub is on lvm, where GRUB cannot clear its one-shot"],
      [{ bootAbstraction: "luks2 cryptodisk\n" }, "/boot/grub is on cryptodisk, where GRUB cannot clear its one-shot"],
      [{ bootAbstraction: "mdraid1x diskfilter\n" }, "/boot/grub is on diskfilter, where GRUB cannot clear its one-shot"],
      [{ commands: ["grub-mkconfig", "unshare"] }, "the host lacks grub-editenv, mkinitramfs"],
      [{ commands: [] }, "the host lacks grub-editenv, grub-mkconfig, unshare, mkinitramfs"],
    ];
    for (const [change, message] of cases) {
      expect({ change, reason: trialUnsupported({ ...bookwormSupportFacts, ...change }) }).toEqual({ change, reason: message });
    }
  });

  it("takes the older 41_custom that sources $prefix/custom.cfg", () => {
    const older = bookwormGrubCfg.replace(
      /### BEGIN \/etc\/grub.d\/41_custom ###\n[\s\S]*?### END/,
      "### BEGIN /etc/grub.d/41_custom ###\nif [ -f  $prefix/custom.cfg ]; then\n  source $prefix/custom.cfg;\nfi\n### END",
    );
    expect(older).not.toContain("config_directory}/custom.cfg");
    expect(trialUnsupported({ ...bookwormSupportFacts, grubCfg: older })).toBeUndefined();
  });
});

describe("trialPlanLine", () => {
  // The wording is preview's; what must hold is that it says which of the two happens and why.
  it("says the change boots once before it becomes permanent, or why this host has no trial boot", () => {
    const reason = "/boot/grub is on btrfs, where GRUB cannot clear its one-shot";
    for (const loader of ["grub", "systemd-boot"] as const) {
      expect(trialPlanLine({ loader })).toMatch(/boot[s]? (once with these changes|these changes once)/);
      expect(trialPlanLine({ loader })).toContain("permanent");
      expect(trialPlanLine({ loader })).not.toContain("no trial boot");
    }
    expect(trialPlanLine({ loader: "systemd-boot" })).toContain("systemd-boot");
    expect(trialPlanLine({ unsupported: reason })).toContain(`no trial boot on this host (${reason})`);
    expect(trialPlanLine({ unsupported: reason })).toContain("permanent before the reboot");
  });
});

const STAGEABLE_PATHS = ["/etc/default/grub", "/etc/initramfs-tools/modules", "/etc/modprobe.d/vfio.conf", "/etc/modprobe.d/vfio-host.conf", "/etc/modprobe.d/blacklist_nouveau.conf"];
const stagedFiles = fc.uniqueArray(
  fc.record({
    path: fc.constantFrom(...STAGEABLE_PATHS),
    beforeSha256: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: null }),
    after: fc.string(),
  }),
  { selector: (f) => f.path, minLength: 1, maxLength: STAGEABLE_PATHS.length },
);
const release = fc.stringMatching(/^[1-6]\.[0-9]{1,2}\.[0-9]{1,2}-[0-9]{1,3}-(amd64|cloud-amd64|rt-amd64)$/);
const options = fc.record({ panicSeconds: fc.integer({ min: 1, max: 300 }), watchdogSeconds: fc.integer({ min: 0, max: 3600 }) });
const trialInput = fc.record({ files: stagedFiles, release, buildImage: fc.boolean(), options });
const idOf = (t: { files: StagedFile[]; release: string; buildImage: boolean; options: TrialOptions }) => trialId(t.files, t.release, t.buildImage, t.options);

describe("trialId", () => {
  it("is 12 lowercase hex digits, the form custom.cfg's markers and grubenv's next_entry are matched by", () => {
    fc.assert(fc.property(trialInput, (t) => expect(idOf(t)).toMatch(/^[0-9a-f]{12}$/)));
  });

  it("does not depend on the order the resources staged their files in", () => {
    fc.assert(
      fc.property(
        trialInput.chain((t) => fc.tuple(fc.constant(t), fc.shuffledSubarray(t.files, { minLength: t.files.length, maxLength: t.files.length }))),
        ([t, shuffled]) => expect(idOf({ ...t, files: shuffled })).toBe(idOf(t)),
      ),
    );
  });

  it("changes with any file's content or path", () => {
    fc.assert(
      fc.property(trialInput, fc.nat(), fc.string(), (t, pick, other) => {
        const i = pick % t.files.length;
        fc.pre(other !== t.files[i].after);
        const edited = t.files.map((f, j) => (j === i ? { ...f, after: other } : f));
        expect(idOf({ ...t, files: edited })).not.toBe(idOf(t));
      }),
    );
    fc.assert(
      fc.property(trialInput, fc.nat(), fc.constantFrom(...STAGEABLE_PATHS), (t, pick, path) => {
        const i = pick % t.files.length;
        fc.pre(!t.files.some((f) => f.path === path));
        const moved = t.files.map((f, j) => (j === i ? { ...f, path } : f));
        expect(idOf({ ...t, files: moved })).not.toBe(idOf(t));
      }),
    );
  });

  it("changes with the release, buildImage, the panic delay and the watchdog margin", () => {
    fc.assert(
      fc.property(trialInput, release, options, (t, otherRelease, otherOptions) => {
        const id = idOf(t);
        expect(idOf({ ...t, buildImage: !t.buildImage })).not.toBe(id);
        if (otherRelease !== t.release) expect(idOf({ ...t, release: otherRelease })).not.toBe(id);
        if (otherOptions.panicSeconds !== t.options.panicSeconds) {
          expect(idOf({ ...t, options: { ...t.options, panicSeconds: otherOptions.panicSeconds } })).not.toBe(id);
        }
        if (otherOptions.watchdogSeconds !== t.options.watchdogSeconds) {
          expect(idOf({ ...t, options: { ...t.options, watchdogSeconds: otherOptions.watchdogSeconds } })).not.toBe(id);
        }
      }),
    );
  });

  it("changes when two files swap their contents", () => {
    const grub = { path: "/etc/default/grub", beforeSha256: null, after: "A" };
    const modules = { path: "/etc/initramfs-tools/modules", beforeSha256: null, after: "B" };
    expect(trialId([grub, modules], BOOKWORM_RELEASE, true, DEFAULTS)).not.toBe(
      trialId([{ ...grub, after: "B" }, { ...modules, after: "A" }], BOOKWORM_RELEASE, true, DEFAULTS),
    );
  });
});

describe("trialOnlyArgs", () => {
  it("marks the trial, sets the panic delay and arms softdog for the trial only", () => {
    expect(trialOnlyArgs(ID, DEFAULTS)).toEqual([
      `vfio_host.trial=${ID}`,
      "panic=10",
      "modules-load=softdog",
      "softdog.soft_margin=300",
      "softdog.soft_active_on_boot=1",
      "softdog.nowayout=0",
      "watchdog.handle_boot_enabled=0",
    ]);
  });

  it("leaves the watchdog out when its margin is 0", () => {
    expect(trialOnlyArgs(ID, { panicSeconds: 30, watchdogSeconds: 0 })).toEqual([`vfio_host.trial=${ID}`, "panic=30"]);
  });

  it("uses the schema's defaults: a 10 s panic delay and a 300 s watchdog", () => {
    expect(TrialOptionsSchema.parse({})).toEqual(DEFAULTS);
  });

  it("never writes a character grub.cfg would read as syntax, and its marker reads back", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9a-f]{12}$/), options, kernelLine(), (id, opts, userLine) => {
        const args = trialOnlyArgs(id, opts);
        for (const arg of args) expect(grubScriptCharacter(arg)).toBeUndefined();
        expect(bootedTrial(`BOOT_IMAGE=/boot/vmlinuz-${BOOKWORM_RELEASE} ${userLine} ${args.join(" ")}`)).toBe(id);
      }),
    );
  });
});

describe("bootedTrial", () => {
  const plain = `BOOT_IMAGE=/boot/vmlinuz-${BOOKWORM_RELEASE} root=UUID=f1673b93-5073-478e-9a14-f725b5cfe0f2 ro intel_iommu=on iommu=pt console=ttyS0`;

  it("reads the trial id off /proc/cmdline, or undefined for a boot that is not a trial", () => {
    expect(bootedTrial(`${plain} vfio_host.trial=${ID} panic=10\n`)).toBe(ID);
    expect(bootedTrial(plain)).toBeUndefined();
    expect(bootedTrial("")).toBeUndefined();
  });

  it("takes the last marker, as the kernel would, and no look-alike key", () => {
    expect(bootedTrial(`${plain} vfio_host.trial=aaaaaaaaaaaa vfio_host.trial=${ID}`)).toBe(ID);
    expect(bootedTrial(`${plain} vfio_host.trial vfio_host.trials=${ID} xvfio_host.trial=${ID}`)).toBeUndefined();
  });
});

describe("firstMenuEntry", () => {
  it("is the bookworm menu's first top-level entry, line for line, not a submenu's", () => {
    expect(firstMenuEntry(bookwormGrubCfg)).toEqual(bookwormFirstEntry);
  });

  it("refuses a menu without a top-level entry or whose first entry does not end", () => {
    expect(() => firstMenuEntry(withoutScript(bookwormGrubCfg, "10_linux"))).toThrow("the generated grub.cfg has no top-level menuentry");
    const unterminated = bookwormFirstEntry.slice(0, -1).join("\n") + "\n";
    expect(() => firstMenuEntry(unterminated)).toThrow("the generated grub.cfg's first menuentry does not end");
  });
});

/** The bookworm entry rendered as the trial of ID with the default options and a trial image. */
const BOOKWORM_TRIAL = [
  BEGIN,
  `menuentry 'vfio-host trial ${ID} (boots once)' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'vfio-host-trial-${ID}' {`,
  "\tload_video",
  "\tinsmod gzio",
  "\tif [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi",
  "\tinsmod part_msdos",
  "\tinsmod ext2",
  "\tsearch --no-floppy --fs-uuid --set=root f1673b93-5073-478e-9a14-f725b5cfe0f2",
  "\techo\t'Loading Linux 6.1.0-57-amd64 ...'",
  "\tlinux\t/boot/vmlinuz-6.1.0-57-amd64 root=UUID=f1673b93-5073-478e-9a14-f725b5cfe0f2 ro  intel_iommu=on iommu=pt console=ttyS0 " +
    `vfio_host.trial=${ID} panic=10 modules-load=softdog softdog.soft_margin=300 softdog.soft_active_on_boot=1 softdog.nowayout=0 watchdog.handle_boot_enabled=0`,
  "\techo\t'Loading initial ramdisk ...'",
  "\tinitrd\t/boot/vfio-host-trial/initrd.img-6.1.0-57-amd64",
  "}",
  END,
  "",
].join("\n");

/** The same host with /boot on its own partition: grub.cfg's paths are relative to it. */
const separateBootEntry = [
  "menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple-0b5e2c77-93a3-4b6e-8d11-5c0c64f7a9e0' {",
  "\tload_video",
  "\tinsmod gzio",
  "\tif [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi",
  "\tinsmod part_msdos",
  "\tinsmod ext2",
  "\tsearch --no-floppy --fs-uuid --set=root 6d1f0b2a-1c4e-4f3a-9e8b-2a7d5c3e1f00",
  "\techo\t'Loading Linux 6.1.0-57-amd64 ...'",
  "\tlinux\t/vmlinuz-6.1.0-57-amd64 root=/dev/mapper/vg0-root ro  quiet",
  "\techo\t'Loading initial ramdisk ...'",
  "\tinitrd\t/initrd.img-6.1.0-57-amd64",
  "}",
];

const render = (entry: readonly string[], trialImage = true, release = BOOKWORM_RELEASE) => renderTrialEntry(entry, ID, trialOnlyArgs(ID, DEFAULTS), release, trialImage);

describe("renderTrialEntry", () => {
  it("renders the bookworm BIOS entry as the trial's, renamed, with the trial args last and the trial initramfs", () => {
    expect(render(bookwormFirstEntry)).toBe(BOOKWORM_TRIAL);
  });

  it("keeps the live initramfs when the trial builds none", () => {
    const lines = render(bookwormFirstEntry, false).split("\n");
    expect(lines).toContain("\tinitrd\t/boot/initrd.img-6.1.0-57-amd64");
    expect(lines.filter((l) => l.includes("vfio-host-trial/"))).toEqual([]);
    expect(render(bookwormFirstEntry, false)).toBe(BOOKWORM_TRIAL.replace("/boot/vfio-host-trial/initrd.img-", "/boot/initrd.img-"));
  });

  it("points at the trial image relative to a separate /boot partition", () => {
    const lines = render(separateBootEntry).split("\n");
    expect(lines).toContain("\tinitrd\t/vfio-host-trial/initrd.img-6.1.0-57-amd64");
    expect(lines).toContain(`\tlinux\t/vmlinuz-6.1.0-57-amd64 root=/dev/mapper/vg0-root ro  quiet ${trialOnlyArgs(ID, DEFAULTS).join(" ")}`);
    expect(lines).toContain("\tsearch --no-floppy --fs-uuid --set=root 6d1f0b2a-1c4e-4f3a-9e8b-2a7d5c3e1f00");
  });

  it("replaces only the release's initrd on a line that loads microcode first", () => {
    const withMicrocode = bookwormFirstEntry.map((l) => (l.startsWith("\tinitrd\t") ? "\tinitrd\t/boot/intel-ucode.img /boot/initrd.img-6.1.0-57-amd64" : l));
    expect(render(withMicrocode).split("\n")).toContain("\tinitrd\t/boot/intel-ucode.img /boot/vfio-host-trial/initrd.img-6.1.0-57-amd64");
  });

  it("refuses an entry without a linux line, or with two", () => {
    expect(() => render(bookwormFirstEntry.filter((l) => !l.startsWith("\tlinux\t")))).toThrow("the generated grub.cfg's first menuentry has 0 linux lines");
    const twice = [...bookwormFirstEntry.slice(0, -1), bookwormFirstEntry[8], "}"];
    expect(() => render(twice)).toThrow("the generated grub.cfg's first menuentry has 2 linux lines");
  });

  it("refuses an entry whose initrd is not the release's when the trial boots its own image", () => {
    const message = "the generated grub.cfg's first menuentry does not load /boot/initrd.img-6.1.0-58-amd64";
    expect(() => render(bookwormFirstEntry, true, "6.1.0-58-amd64")).toThrow(message);
    // A release that is a prefix of the entry's, or that matches it only with `.` read as any character.
    expect(() => render(bookwormFirstEntry, true, "6.1.0-57")).toThrow("does not load /boot/initrd.img-6.1.0-57");
    const dotted = bookwormFirstEntry.map((l) => l.replace("initrd.img-6.1.0-57-amd64", "initrd.img-6x1x0-57-amd64"));
    expect(() => render(dotted)).toThrow("does not load /boot/initrd.img-6.1.0-57-amd64");
    expect(() => render(bookwormFirstEntry.filter((l) => !l.startsWith("\tinitrd\t")))).toThrow("does not load /boot/initrd.img-6.1.0-57-amd64");
  });

  it("refuses a menuentry line it cannot rename", () => {
    expect(() => render(["menuentry \"Debian GNU/Linux\" {", ...bookwormFirstEntry.slice(1)])).toThrow(
      'unexpected menuentry line in the generated grub.cfg: menuentry "Debian GNU/Linux" {',
    );
  });

  // Documentation/admin-guide/kernel-parameters.rst: everything after `--` is passed to init, so the
  // kernel never reads a panic= placed there, and a panicking trial would hang instead of falling back.
  it("puts the trial args where the kernel reads them when the line passes args to init after --", () => {
    const withInitArgs = bookwormFirstEntry.map((l) => (l.startsWith("\tlinux\t") ? `${l} -- single` : l));
    const linux = render(withInitArgs).split("\n").find((l) => l.startsWith("\tlinux\t"))!;
    const tokens = parseKernelArgs(linux);
    expect(tokens.indexOf("panic=10")).toBeGreaterThan(-1);
    expect(tokens.indexOf("panic=10")).toBeLessThan(tokens.indexOf("--"));
  });
});

const hexId = fc.stringMatching(/^[0-9a-f]{12}$/);
/** A 10_linux first entry for any kernel, /boot on the root or its own file system, any user args. */
const generatedEntry = fc
  .record({ release, bootPrefix: fc.constantFrom("/boot", ""), userArgs: kernelLine().filter((l) => !l.includes("--")), microcode: fc.boolean() })
  .map(({ release, bootPrefix, userArgs, microcode }) => ({
    release,
    bootPrefix,
    entry: bookwormFirstEntry.map((l) =>
      l.startsWith("\tlinux\t")
        ? `\tlinux\t${bootPrefix}/vmlinuz-${release} root=UUID=f1673b93-5073-478e-9a14-f725b5cfe0f2 ro ${userArgs}`
        : l.startsWith("\tinitrd\t")
          ? `\tinitrd\t${microcode ? `${bootPrefix}/amd-ucode.img ` : ""}${bootPrefix}/initrd.img-${release}`
          : l.replace(BOOKWORM_RELEASE, release),
    ),
  }));

/** A custom.cfg as users write them (menu entries, comments, any text), ending with a newline, or empty. */
const userCustomCfg = fc.oneof(
  fc.constant(""),
  fc
    .array(
      fc.oneof(
        fc.constantFrom(
          "menuentry 'Windows 11' --class windows {",
          "\tinsmod part_gpt",
          "\tsearch --no-floppy --fs-uuid --set=root 1A2B-3C4D",
          "\tchainloader /EFI/Microsoft/Boot/bootmgfw.efi",
          "}",
          "# my own entries",
          "set timeout=3",
          "",
          "### END vfio-host trial ###",
        ),
        fc.string({ unit: "binary" }),
      ),
      { maxLength: 8 },
    )
    .map((lines) => lines.join("\n") + "\n"),
).filter((text) => !text.includes("### BEGIN vfio-host trial"));

describe("renderTrialEntry and custom.cfg properties", () => {
  it("a rendered block starts and ends with its markers, boots the trial once and loads the trial image", () => {
    fc.assert(
      fc.property(generatedEntry, hexId, options, ({ release, bootPrefix, entry }, id, opts) => {
        const args = trialOnlyArgs(id, opts);
        const block = renderTrialEntry(entry, id, args, release, true);
        expect(block.startsWith(`### BEGIN vfio-host trial ${id} (removed when the trial is committed or falls back) ###\n`)).toBe(true);
        expect(block.endsWith(`}\n${END}\n`)).toBe(true);
        const lines = block.split("\n");
        expect(lines[1]).toMatch(new RegExp(`\\$menuentry_id_option 'vfio-host-trial-${id}' \\{$`));
        const linux = lines.filter((l) => /^\s*linux\s/.test(l));
        expect(linux).toHaveLength(1);
        expect(linux[0].endsWith(` ${args.join(" ")}`)).toBe(true);
        expect(bootedTrial(linux[0].replace(/^\s*linux\s+/, "BOOT_IMAGE="))).toBe(id);
        expect(lines.filter((l) => l.includes(`${bootPrefix}/vfio-host-trial/initrd.img-${release}`))).toHaveLength(1);
      }),
    );
  });

  it("customCfgWithoutTrial(customCfgWithTrial(x, block)) gives back any custom.cfg x byte for byte", () => {
    fc.assert(
      fc.property(userCustomCfg, generatedEntry, hexId, options, fc.boolean(), (x, { release, entry }, id, opts, image) => {
        const block = renderTrialEntry(entry, id, trialOnlyArgs(id, opts), release, image);
        const staged = customCfgWithTrial(x, block);
        expect(staged.endsWith(block)).toBe(true);
        expect(customCfgWithoutTrial(staged)).toBe(x);
      }),
    );
  });

  it("a second trial replaces the first and leaves the user's entries as they were", () => {
    fc.assert(
      fc.property(userCustomCfg, userCustomCfg, generatedEntry, hexId, hexId, (before, after, { release, entry }, first, second) => {
        const blockOf = (id: string) => renderTrialEntry(entry, id, trialOnlyArgs(id, DEFAULTS), release, true);
        // The user added entries after the first trial's block while it was staged.
        const staged = customCfgWithTrial(before, blockOf(first)) + after;
        expect(customCfgWithTrial(staged, blockOf(second))).toBe(before + after + blockOf(second));
      }),
    );
  });
});

describe("customCfgWithTrial and customCfgWithoutTrial", () => {
  const windows = "menuentry 'Windows 11' --class windows {\n\tinsmod part_gpt\n\tchainloader /EFI/Microsoft/Boot/bootmgfw.efi\n}\n";

  it("appends the block to a missing, empty or user custom.cfg", () => {
    expect(customCfgWithTrial(undefined, BOOKWORM_TRIAL)).toBe(BOOKWORM_TRIAL);
    expect(customCfgWithTrial("", BOOKWORM_TRIAL)).toBe(BOOKWORM_TRIAL);
    expect(customCfgWithTrial(windows, BOOKWORM_TRIAL)).toBe(windows + BOOKWORM_TRIAL);
  });

  it("starts the block on its own line after a custom.cfg without a final newline", () => {
    const noNewline = windows.slice(0, -1);
    expect(customCfgWithTrial(noNewline, BOOKWORM_TRIAL)).toBe(`${noNewline}\n${BOOKWORM_TRIAL}`);
    expect(customCfgWithoutTrial(customCfgWithTrial(noNewline, BOOKWORM_TRIAL))).toBe(windows);
  });

  it("replaces an earlier trial's block rather than adding a second", () => {
    const earlier = BOOKWORM_TRIAL.split(ID).join("00000000aaaa");
    const twice = customCfgWithTrial(customCfgWithTrial(windows, earlier), BOOKWORM_TRIAL);
    expect(twice).toBe(windows + BOOKWORM_TRIAL);
    expect(twice.match(/### BEGIN vfio-host trial/g)).toHaveLength(1);
  });

  it("takes every trial block out and nothing else", () => {
    const other = BOOKWORM_TRIAL.split(ID).join("00000000aaaa");
    expect(customCfgWithoutTrial(other + windows + BOOKWORM_TRIAL + "# end\n")).toBe(windows + "# end\n");
    expect(customCfgWithoutTrial(windows)).toBe(windows);
  });
});
