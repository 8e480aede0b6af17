import fc from "fast-check";
import { planInitramfsToolsModules, revertInitramfsToolsModules } from "../../../providers/initramfsModules/initramfsTools";
import { moduleListForKernel } from "../../../providers/kernel/modules";
import { debianInitramfsToolsModules, debianKernel } from "./fixtures";

const vfio = moduleListForKernel(debianKernel).map((m) => m.name);

describe("planInitramfsToolsModules on Debian 12's stock file", () => {
  const plan = planInitramfsToolsModules({ text: debianInitramfsToolsModules, modules: vfio });

  it("appends one line per module after the comments", () => {
    expect(plan.text).toBe(`${debianInitramfsToolsModules}vfio\nvfio_pci\nvfio_iommu_type1\nvfio_virqfd\n`);
    expect(plan.changes).toEqual(["+ vfio", "+ vfio_pci", "+ vfio_iommu_type1", "+ vfio_virqfd"]);
  });

  it("removes only its own lines on revert", () => {
    expect(revertInitramfsToolsModules(plan.text, plan.owned)).toBe(debianInitramfsToolsModules);
  });
});

describe("planInitramfsToolsModules", () => {
  it("counts a module the user already lists, in either spelling and with arguments", () => {
    const text = "# mine\nvfio-pci ids=10de:1c82\n";
    const plan = planInitramfsToolsModules({ text, modules: ["vfio", "vfio_pci"] });
    expect(plan.text).toBe("# mine\nvfio-pci ids=10de:1c82\nvfio\n");
    expect(revertInitramfsToolsModules(plan.text, plan.owned)).toBe(text);
  });

  it("does not count a commented-out module", () => {
    expect(planInitramfsToolsModules({ text: "# vfio\n", modules: ["vfio"] }).text).toBe("# vfio\nvfio\n");
  });

  it("keeps a file without final newline that way", () => {
    const plan = planInitramfsToolsModules({ text: "raid1", modules: ["vfio"] });
    expect(plan.text).toBe("raid1\nvfio");
    expect(revertInitramfsToolsModules(plan.text, plan.owned)).toBe("raid1");
  });

  it("drops a module no longer asked for on the next plan", () => {
    const first = planInitramfsToolsModules({ text: "", modules: vfio });
    const second = planInitramfsToolsModules({ text: first.text, modules: vfio.slice(0, 3), previouslyOwned: first.owned });
    expect(second.text).toBe("vfio\nvfio_pci\nvfio_iommu_type1\n");
    expect(second.changes).toEqual(["- vfio_virqfd"]);
  });
});

const userLine = fc.oneof(
  fc.constantFrom("", "#", "# raid1", "  # indented comment", "raid1", "sd_mod", "dm-crypt", "vfio-pci ids=10de:1c82", "vfio_iommu_type1 allow_unsafe_interrupts=1", "\tnvme  "),
  fc.stringMatching(/^# [ -~]{0,20}$/),
  fc.stringMatching(/^[a-z][a-z0-9_-]{0,10}( [a-z_]+=[0-9a-z,:]{1,8})?$/),
);
const modulesFile = fc.tuple(fc.array(userLine, { maxLength: 10 }), fc.boolean()).map(([lines, newline]) => lines.join("\n") + (newline ? "\n" : ""));
const linesOf = (text: string) => (text === "" ? [] : text.replace(/\n$/, "").split("\n"));
const requested = fc.subarray(["vfio", "vfio_pci", "vfio_iommu_type1", "vfio_virqfd"], { minLength: 1 });

describe("planInitramfsToolsModules properties", () => {
  it("revert(apply(file)) restores the original bytes", () => {
    fc.assert(
      fc.property(modulesFile, requested, (text, modules) => {
        const plan = planInitramfsToolsModules({ text, modules });
        expect(revertInitramfsToolsModules(plan.text, plan.owned)).toBe(text);
      }),
    );
  });

  it("applying twice equals applying once", () => {
    fc.assert(
      fc.property(modulesFile, requested, (text, modules) => {
        const once = planInitramfsToolsModules({ text, modules });
        expect(planInitramfsToolsModules({ text: once.text, modules, previouslyOwned: once.owned })).toEqual({ ...once, changes: [] });
      }),
    );
  });

  it("keeps every user line, in order, and lists every module", () => {
    fc.assert(
      fc.property(modulesFile, requested, (text, modules) => {
        const lines = linesOf(planInitramfsToolsModules({ text, modules }).text);
        expect(lines.slice(0, linesOf(text).length)).toEqual(linesOf(text));
        const named = lines.map((l) => l.trim().split(/\s+/)[0].replace(/-/g, "_"));
        expect(modules.every((m) => named.includes(m))).toBe(true);
      }),
    );
  });
});

describe("planInitramfsToolsModules after a run that died before Pulumi recorded its state", () => {
  it("takes the module lines missing from the backup as its own", () => {
    const written = planInitramfsToolsModules({ text: debianInitramfsToolsModules, modules: vfio }).text;
    expect(planInitramfsToolsModules({ text: written, modules: vfio }).owned.added).toEqual([]);
    const again = planInitramfsToolsModules({ text: written, modules: vfio, backup: debianInitramfsToolsModules });
    expect(again.owned.added).toEqual(vfio);
    expect(revertInitramfsToolsModules(written, again.owned)).toBe(debianInitramfsToolsModules);
  });

  it("write, lose the state, plan again with the backup, revert: the original bytes", () => {
    fc.assert(
      fc.property(modulesFile, requested, (original, modules) => {
        const written = planInitramfsToolsModules({ text: original, modules });
        const again = planInitramfsToolsModules({ text: written.text, modules, backup: original });
        expect(again.text).toBe(written.text);
        expect(again.changes).toEqual([]);
        expect(revertInitramfsToolsModules(written.text, again.owned)).toBe(original);
      }),
    );
  });
});
