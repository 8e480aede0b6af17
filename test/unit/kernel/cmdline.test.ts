import fc from "fast-check";
import { kernelArgKey, kernelArgSyntax, missingKernelArgs, parseKernelArgs } from "../../../providers/kernel/cmdline";
import { planTokens, revertTokenText } from "../../../providers/text/tokenList";
import { OWN_KEYS, ensureArgs, kernelLine, kernelLineWithOwnKeys } from "../kernelCmdline/arbitraries";

const isOwnKey = (token: string) => OWN_KEYS.includes(kernelArgKey(token));
const kernelPart = (line: string) => {
  const args = parseKernelArgs(line);
  const dashes = args.indexOf("--");
  return dashes < 0 ? args : args.slice(0, dashes);
};

describe("parseKernelArgs", () => {
  it("keeps each token exactly, a quoted value with spaces as one token", () => {
    const line = 'BOOT_IMAGE=/vmlinuz root=/dev/mapper/vg0-root ro  cryptroot=UUID=5f0d-4d3e:root acpi_osi="!Windows 2012" quiet -- single';
    expect(parseKernelArgs(line)).toEqual([
      "BOOT_IMAGE=/vmlinuz",
      "root=/dev/mapper/vg0-root",
      "ro",
      "cryptroot=UUID=5f0d-4d3e:root",
      'acpi_osi="!Windows 2012"',
      "quiet",
      "--",
      "single",
    ]);
  });

  it("round-trips any single-spaced line", () => {
    fc.assert(
      fc.property(kernelLine(), (line) => {
        const normalized = parseKernelArgs(line).join(" ");
        expect(parseKernelArgs(normalized).join(" ")).toBe(normalized);
      }),
    );
  });
});

describe("planTokens on a kernel command line", () => {
  it("adds missing args at the end and leaves the rest alone", () => {
    const plan = planTokens("quiet  splash", { ensure: ["intel_iommu=on", "iommu=pt"] }, kernelArgSyntax);
    expect(plan.text).toBe("quiet  splash intel_iommu=on iommu=pt");
    expect(plan.owned).toEqual({ added: ["intel_iommu=on", "iommu=pt"], replaced: [], removed: [] });
    expect(plan.changes).toEqual(["+ intel_iommu=on", "+ iommu=pt"]);
  });

  it("replaces another value of the same key in place (the lab starts with intel_iommu=off)", () => {
    const current = "console=ttyS0,115200 quiet rootfstype=ext4 intel_iommu=off";
    const plan = planTokens(current, { ensure: ["intel_iommu=on", "iommu=pt"] }, kernelArgSyntax);
    expect(plan.text).toBe("console=ttyS0,115200 quiet rootfstype=ext4 intel_iommu=on iommu=pt");
    expect(plan.owned.replaced).toEqual([{ key: "intel_iommu", occurrence: 0, original: "intel_iommu=off", replacement: "intel_iommu=on" }]);
    expect(plan.changes).toEqual(["intel_iommu=off -> intel_iommu=on", "+ iommu=pt"]);
    expect(revertTokenText(plan.text, plan.owned, kernelArgSyntax)).toBe(current);
  });

  it("never touches quoted values or cryptroot", () => {
    const current = 'cryptroot=UUID=5f0d-4d3e:root acpi_osi="!Windows 2012" quiet';
    expect(planTokens(current, { ensure: ["iommu=pt"] }, kernelArgSyntax).text).toBe(`${current} iommu=pt`);
  });

  it("adds before `--`, whose tail belongs to init", () => {
    const plan = planTokens("quiet -- single iommu=soft", { ensure: ["iommu=pt"] }, kernelArgSyntax);
    expect(plan.text).toBe("quiet iommu=pt -- single iommu=soft");
    expect(revertTokenText(plan.text, plan.owned, kernelArgSyntax)).toBe("quiet -- single iommu=soft");
  });

  it("removes what `remove` names and puts it back on revert", () => {
    const current = "quiet nomodeset splash iommu=soft";
    const plan = planTokens(current, { ensure: ["intel_iommu=on"], remove: ["nomodeset", "iommu=soft"] }, kernelArgSyntax);
    expect(plan.text).toBe("quiet splash intel_iommu=on");
    expect(revertTokenText(plan.text, plan.owned, kernelArgSyntax)).toBe(current);
  });

  it("takes back an arg dropped from `ensure` on the next plan", () => {
    const first = planTokens("quiet", { ensure: ["intel_iommu=on", "iommu=pt"] }, kernelArgSyntax);
    const second = planTokens(first.text, { ensure: ["intel_iommu=on"], previouslyOwned: first.owned }, kernelArgSyntax);
    expect(second.text).toBe("quiet intel_iommu=on");
    expect(second.changes).toEqual(["- iommu=pt"]);
  });

  it("reports no change when the line already has the args", () => {
    const plan = planTokens("quiet intel_iommu=on", { ensure: ["intel_iommu=on"] }, kernelArgSyntax);
    expect(plan).toEqual({ text: "quiet intel_iommu=on", owned: { added: [], replaced: [], removed: [] }, changes: [] });
  });
});

describe("planTokens on a kernel command line: properties", () => {
  it("revert(apply(x)) == x for lines without our keys", () => {
    fc.assert(
      fc.property(kernelLine(), ensureArgs, (current, ensure) => {
        const plan = planTokens(current, { ensure }, kernelArgSyntax);
        expect(revertTokenText(plan.text, plan.owned, kernelArgSyntax)).toBe(current);
      }),
    );
  });

  it("revert(apply(x)) == x when the line already has our keys with other values, or args to remove", () => {
    fc.assert(
      fc.property(kernelLineWithOwnKeys, ensureArgs, fc.subarray(["nomodeset", "splash", "noapic=1"]), (current, ensure, remove) => {
        const plan = planTokens(current, { ensure, remove }, kernelArgSyntax);
        expect(revertTokenText(plan.text, plan.owned, kernelArgSyntax)).toBe(current);
      }),
    );
  });

  it("applying twice equals applying once", () => {
    fc.assert(
      fc.property(kernelLineWithOwnKeys, ensureArgs, fc.subarray(["nomodeset", "splash"]), (current, ensure, remove) => {
        const once = planTokens(current, { ensure, remove }, kernelArgSyntax);
        const twice = planTokens(once.text, { ensure, remove, previouslyOwned: once.owned }, kernelArgSyntax);
        expect(twice.text).toBe(once.text);
        expect(twice.owned).toEqual(once.owned);
        expect(twice.changes).toEqual([]);
        // Without the ownership (state lost) the line still does not change.
        expect(planTokens(once.text, { ensure, remove }, kernelArgSyntax).text).toBe(once.text);
      }),
    );
  });

  it("the user's other args survive, in order, and ours are in effect", () => {
    fc.assert(
      fc.property(kernelLineWithOwnKeys, ensureArgs, (current, ensure) => {
        const plan = planTokens(current, { ensure }, kernelArgSyntax);
        expect(parseKernelArgs(plan.text).filter((t) => !isOwnKey(t))).toEqual(parseKernelArgs(current).filter((t) => !isOwnKey(t)));
        expect(missingKernelArgs(plan.text, ensure)).toEqual([]);
        expect(kernelPart(plan.text).filter((t) => ensure.some((e) => kernelArgKey(e) === kernelArgKey(t)) && !ensure.includes(t))).toEqual([]);
      }),
    );
  });

  it("an update reverts the old request and applies the new one", () => {
    fc.assert(
      fc.property(kernelLineWithOwnKeys, ensureArgs, ensureArgs, (current, first, next) => {
        const a = planTokens(current, { ensure: first }, kernelArgSyntax);
        const b = planTokens(a.text, { ensure: next, previouslyOwned: a.owned }, kernelArgSyntax);
        expect(b).toEqual({ ...planTokens(current, { ensure: next }, kernelArgSyntax), changes: b.changes });
        expect(revertTokenText(b.text, b.owned, kernelArgSyntax)).toBe(current);
      }),
    );
  });
});

describe("missingKernelArgs", () => {
  it("counts the last occurrence of a key, as the kernel does", () => {
    expect(missingKernelArgs("intel_iommu=off quiet intel_iommu=on", ["intel_iommu=on"])).toEqual([]);
    expect(missingKernelArgs("intel_iommu=on quiet intel_iommu=off", ["intel_iommu=on"])).toEqual(["intel_iommu=on"]);
  });

  it("ignores what follows `--`", () => {
    expect(missingKernelArgs("quiet -- iommu=pt", ["iommu=pt"])).toEqual(["iommu=pt"]);
  });

  it("treats a quoted value like the unquoted one", () => {
    expect(missingKernelArgs('"intel_iommu=on" iommu="pt"', ["intel_iommu=on", "iommu=pt"])).toEqual([]);
  });
});
