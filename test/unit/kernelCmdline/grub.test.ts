import fc from "fast-check";
import { kernelArgKey, parseKernelArgs } from "../../../providers/kernel/cmdline";
import { grubCfgHasArgs, planGrubDefaults, revertGrubDefaults } from "../../../providers/kernelCmdline/grub";
import { encodeShellValue, readShellVariable, shellVariableValue } from "../../../providers/text/shellVariable";
import { OWN_KEYS, ensureArgs, kernelLine, kernelLineWithOwnKeys, shellFile } from "./arbitraries";
import { debianDefaultGrub, debianGrubCfg } from "./fixtures";

const VAR = "GRUB_CMDLINE_LINUX_DEFAULT";
const spec = { name: VAR, source: "/etc/default/grub", example: "" };
const grubFile = shellFile(VAR, kernelLineWithOwnKeys);

describe("planGrubDefaults on Debian 12's /etc/default/grub", () => {
  const plan = planGrubDefaults({ text: debianDefaultGrub, ensure: ["intel_iommu=on", "iommu=pt"] });

  it("changes only the value of GRUB_CMDLINE_LINUX_DEFAULT", () => {
    expect(plan.text).toBe(debianDefaultGrub.replace('GRUB_CMDLINE_LINUX_DEFAULT="quiet"', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"'));
    expect(plan.changes).toEqual(["+ intel_iommu=on", "+ iommu=pt"]);
    expect(plan.warnings).toEqual([]);
  });

  it("gives back the original bytes on revert", () => {
    expect(revertGrubDefaults(plan.text, plan.owned)).toBe(debianDefaultGrub);
  });
});

describe("planGrubDefaults", () => {
  it("keeps single quotes, spacing and a trailing comment", () => {
    const text = "GRUB_TIMEOUT=5\n  export GRUB_CMDLINE_LINUX_DEFAULT='quiet  splash'   # installer\n";
    const plan = planGrubDefaults({ text, ensure: ["iommu=pt"] });
    expect(plan.text).toBe("GRUB_TIMEOUT=5\n  export GRUB_CMDLINE_LINUX_DEFAULT='quiet  splash iommu=pt'   # installer\n");
    expect(revertGrubDefaults(plan.text, plan.owned)).toBe(text);
  });

  it("quotes an unquoted single word when it grows, and unquotes it on revert", () => {
    const text = "GRUB_CMDLINE_LINUX_DEFAULT=quiet\n";
    const plan = planGrubDefaults({ text, ensure: ["intel_iommu=on"] });
    expect(plan.text).toBe('GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n');
    expect(revertGrubDefaults(plan.text, plan.owned)).toBe(text);
  });

  it("edits the last assignment, which is the one update-grub uses", () => {
    const text = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n';
    expect(planGrubDefaults({ text, ensure: ["iommu=pt"] }).text).toBe(
      'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash iommu=pt"\n',
    );
  });

  it("appends a line when the file has none, and removes it on revert", () => {
    const text = "GRUB_DEFAULT=0";
    const plan = planGrubDefaults({ text, ensure: ["intel_iommu=on", "iommu=pt"] });
    expect(plan.text).toBe('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n');
    expect(revertGrubDefaults(plan.text, plan.owned)).toBe(text);
  });

  it("warns when GRUB_CMDLINE_LINUX carries another value of our key or an arg `remove` names", () => {
    const text = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX="intel_iommu=off nomodeset"\n';
    expect(planGrubDefaults({ text, ensure: ["intel_iommu=on"], remove: ["nomodeset"] }).warnings).toEqual([
      "GRUB_CMDLINE_LINUX in /etc/default/grub carries intel_iommu=off; GRUB_CMDLINE_LINUX_DEFAULT comes after it on the default entry's linux line, so intel_iommu=on wins there, but recovery entries keep intel_iommu=off",
      "GRUB_CMDLINE_LINUX in /etc/default/grub still carries nomodeset, which `remove` names; this resource edits only GRUB_CMDLINE_LINUX_DEFAULT, so take it out of GRUB_CMDLINE_LINUX by hand",
    ]);
  });

  it("refuses a drop-in that overrides GRUB_CMDLINE_LINUX_DEFAULT", () => {
    const dropIns = [{ path: "/etc/default/grub.d/50-cloudimg-settings.cfg", text: '# cloud\nGRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"\n' }];
    expect(() => planGrubDefaults({ text: debianDefaultGrub, ensure: ["iommu=pt"], dropIns })).toThrow(
      '/etc/default/grub.d/50-cloudimg-settings.cfg line 2 sets GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"; update-grub reads it after /etc/default/grub, so the arguments set there would be lost. Delete that line, or make it add to the value: GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT ..."',
    );
  });

  it("accepts a drop-in that adds to the value", () => {
    const dropIns = [{ path: "/etc/default/grub.d/kdump-tools.cfg", text: 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT crashkernel=384M-:128M"\n' }];
    expect(planGrubDefaults({ text: debianDefaultGrub, ensure: ["iommu=pt"], dropIns }).changes).toEqual(["+ iommu=pt"]);
  });

  it("refuses a value built from a variable, naming the line", () => {
    const text = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT splash"\n';
    expect(() => planGrubDefaults({ text, ensure: ["iommu=pt"] })).toThrow(
      '/etc/default/grub line 2: GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT splash" expands $ or ` when the shell reads it, so its value cannot be edited safely; write the value out in one quoted string, e.g. GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"',
    );
  });

  it("refuses to rewrite a value whose quoting would not survive, but leaves it alone when nothing changes", () => {
    const text = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"' splash'\n";
    expect(() => planGrubDefaults({ text, ensure: ["iommu=pt"] })).toThrow(
      "/etc/default/grub line 1: GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"' splash' uses quoting that cannot be rewritten without changing other bytes (several quoted parts, or backslashes the shell drops); write it as one quoted string, e.g. GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"",
    );
    expect(planGrubDefaults({ text, ensure: ["splash"] }).text).toBe(text);
  });
});

describe("planGrubDefaults properties", () => {
  it("revert(apply(file)) restores the original bytes", () => {
    fc.assert(
      fc.property(grubFile, ensureArgs, (text, ensure) => {
        const plan = planGrubDefaults({ text, ensure });
        expect(revertGrubDefaults(plan.text, plan.owned)).toBe(text);
      }),
    );
  });

  it("applying twice equals applying once", () => {
    fc.assert(
      fc.property(grubFile, ensureArgs, (text, ensure) => {
        const once = planGrubDefaults({ text, ensure });
        const twice = planGrubDefaults({ text: once.text, ensure, previouslyOwned: once.owned });
        expect(twice.text).toBe(once.text);
        expect(twice.owned).toEqual(once.owned);
        expect(twice.changes).toEqual([]);
      }),
    );
  });

  it("changes no byte outside the value, and keeps the user's args in order", () => {
    fc.assert(
      fc.property(grubFile.filter((t) => readShellVariable(t, spec) !== undefined), ensureArgs, (text, ensure) => {
        const before = readShellVariable(text, spec)!;
        const plan = planGrubDefaults({ text, ensure });
        const after = readShellVariable(plan.text, spec)!;
        expect(plan.text.slice(0, after.assignment.valueStart)).toBe(text.slice(0, before.assignment.valueStart));
        expect(plan.text.slice(after.assignment.valueEnd)).toBe(text.slice(before.assignment.valueEnd));
        const userArgs = (line: string) => parseKernelArgs(line).filter((t) => !OWN_KEYS.includes(kernelArgKey(t)));
        expect(userArgs(after.value!)).toEqual(userArgs(before.value!));
      }),
    );
  });

  it("a fresh grub.cfg built from the result has the args on the default entry", () => {
    fc.assert(
      fc.property(kernelLine(), ensureArgs, (line, ensure) => {
        const plan = planGrubDefaults({ text: `GRUB_CMDLINE_LINUX_DEFAULT=${encodeShellValue(line, "double")}\n`, ensure });
        const value = readShellVariable(plan.text, spec)!.value!;
        const cfg = `menuentry 'Debian GNU/Linux' {\n\tlinux\t/boot/vmlinuz root=/dev/sda1 ro  ${value}\n}\n`;
        expect(grubCfgHasArgs(cfg, ensure)).toEqual({ ok: true, problems: [] });
      }),
    );
  });
});

describe("grubCfgHasArgs", () => {
  it("fails on Debian's grub.cfg before update-grub ran, naming the entry and the line", () => {
    expect(grubCfgHasArgs(debianGrubCfg, ["intel_iommu=on", "iommu=pt"])).toEqual({
      ok: false,
      problems: ["/boot/grub/grub.cfg: the first menuentry ('Debian GNU/Linux') boots without intel_iommu=on iommu=pt on its linux line (line 35); run update-grub"],
    });
  });

  it("passes once the default entry's linux line carries the args", () => {
    const updated = debianGrubCfg.replace(/ro {2}quiet$/m, "ro  quiet intel_iommu=on iommu=pt");
    expect(grubCfgHasArgs(updated, ["intel_iommu=on", "iommu=pt"])).toEqual({ ok: true, problems: [] });
  });

  it("reports a grub.cfg without menuentry", () => {
    expect(grubCfgHasArgs("set default=0\n", ["iommu=pt"])).toEqual({ ok: false, problems: ["/boot/grub/grub.cfg has no menuentry; run update-grub"] });
  });
});

describe("planGrubDefaults after a run that died before Pulumi recorded its state", () => {
  const removable = fc.subarray(["nomodeset", "splash", "intel_iommu=off"]);

  it("recognises its own args from the backup, so revert gives back the original bytes", () => {
    const written = planGrubDefaults({ text: debianDefaultGrub, ensure: ["intel_iommu=on", "iommu=pt"] });
    // Planned again as a create: no state, the args already there, the backup as a fact.
    const blind = planGrubDefaults({ text: written.text, ensure: ["intel_iommu=on", "iommu=pt"] });
    expect(blind.owned.tokens).toEqual({ added: [], replaced: [], removed: [] });
    expect(revertGrubDefaults(written.text, blind.owned)).toBe(written.text);
    const adopted = planGrubDefaults({ text: written.text, ensure: ["intel_iommu=on", "iommu=pt"], backup: debianDefaultGrub });
    expect(adopted.text).toBe(written.text);
    expect(adopted.changes).toEqual([]);
    expect(revertGrubDefaults(written.text, adopted.owned)).toBe(debianDefaultGrub);
  });

  it("takes a replaced value as its own, with the backup's value as the original", () => {
    const original = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"\n';
    const written = planGrubDefaults({ text: original, ensure: ["intel_iommu=on"] }).text;
    const adopted = planGrubDefaults({ text: written, ensure: ["intel_iommu=on"], backup: original });
    expect(adopted.owned.tokens.replaced).toEqual([{ key: "intel_iommu", occurrence: 0, original: "intel_iommu=off", replacement: "intel_iommu=on" }]);
    expect(revertGrubDefaults(written, adopted.owned)).toBe(original);
  });

  it("takes nothing when the file differs from the backup in a way its args do not explain", () => {
    const original = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n';
    const handEdited = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash iommu=pt"\n';
    const plan = planGrubDefaults({ text: handEdited, ensure: ["iommu=pt"], backup: original });
    expect(plan.owned.tokens).toEqual({ added: [], replaced: [], removed: [] });
    expect(revertGrubDefaults(handEdited, plan.owned)).toBe(handEdited);
  });

  it("write, lose the state, plan again with the backup, revert: the original bytes", () => {
    fc.assert(
      fc.property(grubFile, ensureArgs, removable, (original, ensure, remove) => {
        const written = planGrubDefaults({ text: original, ensure, remove });
        const again = planGrubDefaults({ text: written.text, ensure, remove, backup: original });
        expect(again.text).toBe(written.text);
        expect(again.changes).toEqual([]);
        expect(revertGrubDefaults(written.text, again.owned)).toBe(original);
      }),
    );
  });

  it("never takes an arg added by hand as its own", () => {
    fc.assert(
      fc.property(grubFile, ensureArgs, fc.constantFrom("splash", "mitigations=off", "console=ttyS1"), (original, ensure, hand) => {
        const written = planGrubDefaults({ text: original, ensure });
        const edited = planGrubDefaults({ text: written.text, ensure: [hand] });
        fc.pre(edited.changes.length > 0);
        const again = planGrubDefaults({ text: edited.text, ensure, backup: original });
        expect(shellVariableValue(revertGrubDefaults(edited.text, again.owned), spec)).toContain(hand);
      }),
    );
  });
});
