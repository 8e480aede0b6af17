import fc from "fast-check";
import { planSyslinuxConfig, revertSyslinuxConfig, SYSLINUX_CONFIG_PATHS, syslinuxConfigHasArgs } from "../../../providers/kernelCmdline/syslinux";
import { ensureArgs, kernelLineWithOwnKeys } from "./arbitraries";
import { alpineExtlinuxConf, debianExtlinuxConf, debianUBootExtlinuxConf, unraidSyslinuxCfg } from "./fixtures";

const VFIO = ["intel_iommu=on", "iommu=pt"];
const UNRAID = "/boot/syslinux/syslinux.cfg";

describe("planSyslinuxConfig on Unraid's stock syslinux.cfg", () => {
  const plan = planSyslinuxConfig({ text: unraidSyslinuxCfg, ensure: VFIO, path: UNRAID });

  it("appends the args to the append line of all four Unraid OS labels, not to memtest", () => {
    expect(plan.text).toBe(unraidSyslinuxCfg.replace(/^( {2}append .*)$/gm, "$1 intel_iommu=on iommu=pt"));
    expect(Object.keys(plan.owned)).toEqual(["Unraid OS", "Unraid OS GUI Mode", "Unraid OS Safe Mode (no plugins, no GUI)", "Unraid OS GUI Safe Mode (no plugins)"]);
    expect(plan.changes.slice(0, 2)).toEqual(["LABEL Unraid OS: + intel_iommu=on", "LABEL Unraid OS: + iommu=pt"]);
    expect(plan.text.endsWith("label Memtest86+\n  kernel /memtest\n")).toBe(true);
  });

  it("gives back the original bytes on revert, and is a no-op the second time", () => {
    expect(revertSyslinuxConfig(plan.text, plan.owned)).toBe(unraidSyslinuxCfg);
    expect(planSyslinuxConfig({ text: plan.text, ensure: VFIO, path: UNRAID, previouslyOwned: plan.owned })).toEqual({ ...plan, changes: [] });
  });

  it("recognises its own args per label from the backup after a run that died before recording them", () => {
    const adopted = planSyslinuxConfig({ text: plan.text, ensure: VFIO, backup: unraidSyslinuxCfg });
    expect(adopted.owned).toEqual(plan.owned);
    expect(revertSyslinuxConfig(plan.text, adopted.owned)).toBe(unraidSyslinuxCfg);
  });

  it("checks the MENU DEFAULT label, since DEFAULT names menu.c32", () => {
    expect(syslinuxConfigHasArgs(unraidSyslinuxCfg, VFIO, UNRAID)).toEqual({
      ok: false,
      problems: ["/boot/syslinux/syslinux.cfg: the default LABEL Unraid OS boots without intel_iommu=on iommu=pt"],
    });
    expect(syslinuxConfigHasArgs(plan.text, VFIO, UNRAID)).toEqual({ ok: true, problems: [] });
  });
});

describe("planSyslinuxConfig on a Debian 12 extlinux.conf", () => {
  const plan = planSyslinuxConfig({ text: debianExtlinuxConf, ensure: VFIO, remove: ["quiet"] });

  it("edits both Linux labels, skips the COM32 and memtest labels and the help text", () => {
    expect(Object.keys(plan.owned)).toEqual(["debian", "debian-rescue"]);
    expect(plan.text).toContain("\tAPPEND root=UUID=6ad3a1f5-3b3c-4c4b-9b1f-3f1d2f0c1a2b ro intel_iommu=on iommu=pt\n");
    expect(plan.text).toContain("\tAPPEND root=UUID=6ad3a1f5-3b3c-4c4b-9b1f-3f1d2f0c1a2b ro single intel_iommu=on iommu=pt\n");
    expect(plan.text).toContain("Boots into single-user mode. APPEND here is help text, not config.\n");
    expect(revertSyslinuxConfig(plan.text, plan.owned)).toBe(debianExtlinuxConf);
  });

  it("checks the label DEFAULT names", () => {
    expect(syslinuxConfigHasArgs(plan.text, VFIO).ok).toBe(true);
    expect(syslinuxConfigHasArgs(debianExtlinuxConf.replace("DEFAULT debian", "DEFAULT hdt"), VFIO)).toEqual({
      ok: false,
      problems: ["the syslinux config: the default LABEL hdt does not boot Linux (it boots with COM32)"],
    });
  });
});

describe("planSyslinuxConfig refusals", () => {
  it("refuses a file u-boot-update rewrites at every kernel update", () => {
    expect(() => planSyslinuxConfig({ text: debianUBootExtlinuxConf, ensure: VFIO, path: "/boot/extlinux/extlinux.conf" })).toThrow(
      "/boot/extlinux/extlinux.conf is written by u-boot-update, which rewrites it at every kernel update and would drop the arguments; set them where u-boot-update reads them instead",
    );
  });

  it("refuses a Linux label without its own APPEND, a bare APPEND, APPEND -, duplicate labels and a config with no Linux label", () => {
    expect(() => planSyslinuxConfig({ text: "APPEND quiet\nLABEL a\n LINUX /vmlinuz\n", ensure: VFIO })).toThrow(
      "the syslinux config: LABEL a boots a kernel but has no APPEND line of its own (it takes the global APPEND, if any); add \"APPEND\" with the arguments it should boot with to that label",
    );
    expect(() => planSyslinuxConfig({ text: "LABEL a\n LINUX /vmlinuz\n APPEND\n", ensure: VFIO })).toThrow('LABEL a has a bare "APPEND"');
    expect(() => planSyslinuxConfig({ text: "LABEL a\n LINUX /vmlinuz\n APPEND -\n", ensure: VFIO })).toThrow('LABEL a has "APPEND -"');
    expect(() => planSyslinuxConfig({ text: "LABEL a\n LINUX /v\n APPEND x\nLABEL a\n LINUX /w\n APPEND y\n", ensure: VFIO })).toThrow(
      "the syslinux config has LABEL a twice; syslinux boots the first one it finds. Rename or delete the other",
    );
    expect(() => planSyslinuxConfig({ text: "LABEL m\n KERNEL /memtest\nLABEL h\n COM32 hdt.c32\n", ensure: VFIO })).toThrow(
      "the syslinux config has no LABEL that boots a Linux kernel (LINUX or KERNEL line); check that this is the config the host boots",
    );
  });

  it("reads keywords in any case, the way syslinux does", () => {
    const plan = planSyslinuxConfig({ text: "Label x\n  Linux /vmlinuz\n  Append root=/dev/sda1\n", ensure: ["iommu=pt"] });
    expect(plan.text).toBe("Label x\n  Linux /vmlinuz\n  Append root=/dev/sda1 iommu=pt\n");
  });
});

describe("SYSLINUX_CONFIG_PATHS", () => {
  it("leaves Alpine's generated /boot/extlinux.conf to update-extlinux", () => {
    expect(SYSLINUX_CONFIG_PATHS).not.toContain("/boot/extlinux.conf");
    expect(alpineExtlinuxConf).toContain("# Generated by update-extlinux");
  });
});

/** A syslinux config of Linux labels (the first the MENU DEFAULT), each with an APPEND of user args, and a memtest label, in any case and indentation. */
const syslinuxFile = fc
  .record({
    appends: fc.array(kernelLineWithOwnKeys.map((line) => line.replace(/\n/g, " ")), { minLength: 1, maxLength: 4 }),
    upper: fc.boolean(),
    indent: fc.constantFrom("", "  ", "\t"),
    memtestAt: fc.nat(4),
    crlf: fc.boolean(),
  })
  .map(({ appends, upper, indent, memtestAt, crlf }) => {
    const k = (word: string) => (upper ? word.toUpperCase() : word);
    const labels = appends.map((args, i) =>
      [`${k("label")} linux${i}`, ...(i === 0 ? [`${indent}${k("menu default")}`] : []), `${indent}${k("kernel")} /vmlinuz-${i}`, `${indent}${k("append")} ${args}`].join("\n"),
    );
    labels.splice(Math.min(memtestAt, labels.length), 0, `${k("label")} memtest\n${indent}${k("kernel")} /memtest`);
    const text = [`${k("default")} menu.c32`, `${k("timeout")} 50`, ...labels].join("\n") + "\n";
    return crlf ? text.replace(/\n/g, "\r\n") : text;
  });

describe("planSyslinuxConfig properties", () => {
  it("revert(apply(config)) restores the original bytes", () => {
    fc.assert(
      fc.property(syslinuxFile, ensureArgs, (text, ensure) => {
        const plan = planSyslinuxConfig({ text, ensure, remove: ["nomodeset"] });
        expect(revertSyslinuxConfig(plan.text, plan.owned)).toBe(text);
      }),
    );
  });

  it("applying twice equals applying once", () => {
    fc.assert(
      fc.property(syslinuxFile, ensureArgs, (text, ensure) => {
        const once = planSyslinuxConfig({ text, ensure, remove: ["nomodeset"] });
        expect(planSyslinuxConfig({ text: once.text, ensure, remove: ["nomodeset"], previouslyOwned: once.owned })).toEqual({ ...once, changes: [] });
      }),
    );
  });

  it("gives every Linux label the args, the default one checks out, and no other line changes", () => {
    fc.assert(
      fc.property(syslinuxFile, ensureArgs, (text, ensure) => {
        const planned = planSyslinuxConfig({ text, ensure }).text;
        const notAppend = (t: string) => t.split("\n").filter((line) => !/^\s*append\s/i.test(line));
        expect(notAppend(planned)).toEqual(notAppend(text));
        expect(syslinuxConfigHasArgs(planned, ensure)).toEqual({ ok: true, problems: [] });
      }),
    );
  });
});
