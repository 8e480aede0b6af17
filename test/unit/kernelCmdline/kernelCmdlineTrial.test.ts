// KernelCmdline on a stack that boots changes once first: the plan carries the host's staging, and
// preview names the trial once among the changes, only when there are changes, and never for extlinux.
import fc from "fast-check";
import { trialPlanLine } from "../../../providers/bootTrial/plan";
import { Staging } from "../../../providers/bootTrial/host";
import { describeKernelCmdlinePlan, planKernelCmdline } from "../../../providers/kernelCmdline/resource";
import { KernelCmdlineInputs } from "../../../providers/kernelCmdline/schema";
import { ensureArgs, kernelLineWithOwnKeys, shellFile } from "./arbitraries";
import { alpineExtlinuxConf, alpineUpdateExtlinuxConf, debianDefaultGrub, debianGrubCfg } from "./fixtures";

const ARGS = ["intel_iommu=on", "iommu=pt"];
const grubInputs = KernelCmdlineInputs.parse({ args: ARGS, trial: true });
const grubFacts = { defaults: debianDefaultGrub, grubCfg: debianGrubCfg, dropIns: [] };
const staging: Staging = { stage: true, loader: "grub", line: trialPlanLine({ loader: "grub" }) };
const unsupported: Staging = { stage: false, line: trialPlanLine({ unsupported: "/boot/grub is on btrfs, where GRUB cannot clear its one-shot" }) };
const count = (lines: readonly string[], line: string | undefined) => lines.filter((l) => l === line).length;
const GRUB_AUTO = "backend grub (auto: the only loader whose files are here; which loader booted the host is not known)";

/** Debian 12 after the args were applied: the source file and the grub.cfg update-grub made from it. */
const appliedDefaults = planKernelCmdline(grubInputs, grubFacts, undefined).edits[0].after;
const appliedGrubCfg = debianGrubCfg.replace(/ ro {2}quiet\n/g, " ro  quiet intel_iommu=on iommu=pt\n");

describe("planKernelCmdline with staging on GRUB", () => {
  it("describes the change, the regeneration and then the trial, once", () => {
    const plan = planKernelCmdline(grubInputs, grubFacts, undefined, staging);
    expect(plan.staging).toEqual(staging);
    expect(describeKernelCmdlinePlan(plan)).toEqual([
      GRUB_AUTO,
      "/etc/default/grub: + intel_iommu=on",
      "/etc/default/grub: + iommu=pt",
      "regenerate /boot/grub/grub.cfg (update-grub)",
      staging.line,
    ]);
  });

  it("says, on a host without trial boots, that the change becomes permanent before the reboot", () => {
    const described = describeKernelCmdlinePlan(planKernelCmdline(grubInputs, grubFacts, undefined, unsupported));
    expect(count(described, unsupported.line)).toBe(1);
    expect(described[described.length - 1]).toBe(unsupported.line);
  });

  it("names the trial when only grub.cfg is stale, since that too needs the reboot", () => {
    const plan = planKernelCmdline(grubInputs, { ...grubFacts, defaults: appliedDefaults }, undefined, staging);
    expect(plan.edits[0].after).toBe(plan.edits[0].before);
    expect(describeKernelCmdlinePlan(plan)).toEqual([GRUB_AUTO, "regenerate /boot/grub/grub.cfg (update-grub)", staging.line]);
  });

  it("describes nothing, and no trial, when the host already has the args", () => {
    const first = planKernelCmdline(grubInputs, grubFacts, undefined);
    const plan = planKernelCmdline(grubInputs, { ...grubFacts, defaults: appliedDefaults, grubCfg: appliedGrubCfg }, { backend: "grub", owned: first.owned }, staging);
    expect(plan.stale).toBe(false);
    expect(describeKernelCmdlinePlan(plan)).toEqual([]);
  });

  it("adds no trial line without staging", () => {
    const described = describeKernelCmdlinePlan(planKernelCmdline(grubInputs, grubFacts, undefined));
    expect(described).toEqual([GRUB_AUTO, "/etc/default/grub: + intel_iommu=on", "/etc/default/grub: + iommu=pt", "regenerate /boot/grub/grub.cfg (update-grub)"]);
  });
});

describe("planKernelCmdline with staging on extlinux", () => {
  const inputs = KernelCmdlineInputs.parse({ args: ARGS, modules: ["vfio", "vfio-pci"], trial: true });
  const facts = { extlinuxDefaults: alpineUpdateExtlinuxConf, extlinuxCfg: alpineExtlinuxConf, dropIns: [] };

  it("never stages: extlinux changes are written as they always were, and preview names no trial", () => {
    const plan = planKernelCmdline(inputs, facts, undefined, staging);
    expect(plan.backend).toBe("extlinux");
    expect(plan.staging).toEqual({ stage: false });
    const described = describeKernelCmdlinePlan(plan);
    expect(described.length).toBeGreaterThan(0);
    expect(count(described, staging.line)).toBe(0);
    expect(described[described.length - 1]).toBe("regenerate /boot/extlinux.conf (update-extlinux)");
  });

  it("names no trial when it is stale only either", () => {
    const applied = planKernelCmdline(inputs, facts, undefined).edits[0].after;
    const described = describeKernelCmdlinePlan(planKernelCmdline(inputs, { ...facts, extlinuxDefaults: applied, extlinuxCfg: alpineExtlinuxConf }, undefined, staging));
    expect(described).toEqual(["backend extlinux (auto: the only loader whose files are here; which loader booted the host is not known)", "regenerate /boot/extlinux.conf (update-extlinux)"]);
  });
});

describe("planKernelCmdline staging properties", () => {
  const grubDefaults = shellFile("GRUB_CMDLINE_LINUX_DEFAULT", kernelLineWithOwnKeys);

  it("staging adds the trial line once at the end when there is anything to do, and changes nothing else", () => {
    fc.assert(
      fc.property(grubDefaults, ensureArgs, fc.constantFrom(staging, unsupported), fc.boolean(), fc.boolean(), (original, args, given, applied, current) => {
        const inputs = KernelCmdlineInputs.parse({ args, trial: true });
        // The source file as the user left it or with the args already in, and grub.cfg as update-grub
        // wrote it with the args or from the file before them.
        const grubCfg = current ? `menuentry 'Debian GNU/Linux' {\n\tlinux\t/boot/vmlinuz ro ${args.join(" ")}\n}\n` : debianGrubCfg;
        const defaults = applied ? planKernelCmdline(inputs, { defaults: original, grubCfg, dropIns: [] }, undefined).edits[0].after : original;
        const facts = { defaults, grubCfg, dropIns: [] };
        const plain = describeKernelCmdlinePlan(planKernelCmdline(inputs, facts, undefined));
        const staged = describeKernelCmdlinePlan(planKernelCmdline(inputs, facts, undefined, given));
        expect(staged).toEqual(plain.length === 0 ? [] : [...plain, given.line]);
        expect(count(staged, given.line)).toBe(plain.length === 0 ? 0 : 1);
      }),
    );
  });
});
