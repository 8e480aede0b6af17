import fc from "fast-check";
import { extlinuxCfgHasArgs, planUpdateExtlinuxConf, revertUpdateExtlinuxConf } from "../../../providers/kernelCmdline/extlinux";
import { shellVariableValue } from "../../../providers/text/shellVariable";
import { KernelModules } from "../../../providers/kernel/modules";
import { ensureArgs, kernelLineWithOwnKeys, otherShellLine, shellAssignment } from "./arbitraries";
import { alpineExtlinuxConf, alpineExtlinuxConfWithVfio, alpineUpdateExtlinuxConf, labUpdateExtlinuxConf } from "./fixtures";

const VFIO_MODULES = ["vfio", "vfio-pci", "vfio_iommu_type1", "vfio_virqfd"];
const opts = { name: "default_kernel_opts", source: "/etc/update-extlinux.conf", example: "" };
const mods = { name: "modules", source: "/etc/update-extlinux.conf", example: "" };

describe("planUpdateExtlinuxConf on the reference Alpine host", () => {
  const plan = planUpdateExtlinuxConf({ text: alpineUpdateExtlinuxConf, ensure: ["intel_iommu=on", "iommu=pt"], modules: VFIO_MODULES });

  it("appends the args to default_kernel_opts and the modules to modules=, nothing else", () => {
    expect(plan.text).toBe(
      alpineUpdateExtlinuxConf
        .replace('default_kernel_opts="quiet rootfstype=ext4"', 'default_kernel_opts="quiet rootfstype=ext4 intel_iommu=on iommu=pt"')
        .replace("modules=sd-mod,usb-storage,ext4\n", "modules=sd-mod,usb-storage,ext4,vfio,vfio-pci,vfio_iommu_type1,vfio_virqfd\n"),
    );
    expect(plan.changes).toEqual([
      "default_kernel_opts: + intel_iommu=on",
      "default_kernel_opts: + iommu=pt",
      "modules: + vfio",
      "modules: + vfio-pci",
      "modules: + vfio_iommu_type1",
      "modules: + vfio_virqfd",
    ]);
  });

  it("gives back the original bytes on revert", () => {
    expect(revertUpdateExtlinuxConf(plan.text, plan.owned)).toBe(alpineUpdateExtlinuxConf);
  });

  it("is a no-op the second time", () => {
    const again = planUpdateExtlinuxConf({ text: plan.text, ensure: ["intel_iommu=on", "iommu=pt"], modules: VFIO_MODULES, previouslyOwned: plan.owned });
    expect(again).toEqual({ ...plan, changes: [] });
  });
});

describe("planUpdateExtlinuxConf", () => {
  it("turns the lab's intel_iommu=off into intel_iommu=on and back", () => {
    const plan = planUpdateExtlinuxConf({ text: labUpdateExtlinuxConf, ensure: ["intel_iommu=on", "iommu=pt"], modules: ["vfio", "vfio-pci", "vfio_iommu_type1"] });
    expect(shellVariableValue(plan.text, opts)).toBe("console=ttyS0,115200 quiet rootfstype=ext4 intel_iommu=on iommu=pt");
    expect(shellVariableValue(plan.text, mods)).toBe("sd-mod,usb-storage,ext4,virtio_blk,vfio,vfio-pci,vfio_iommu_type1");
    expect(plan.changes[0]).toBe("default_kernel_opts: intel_iommu=off -> intel_iommu=on");
    expect(revertUpdateExtlinuxConf(plan.text, plan.owned)).toBe(labUpdateExtlinuxConf);
  });

  it("counts a module already listed in the other spelling", () => {
    const text = "modules=sd-mod,vfio_pci\ndefault_kernel_opts=\"quiet\"\n";
    expect(shellVariableValue(planUpdateExtlinuxConf({ text, ensure: [], modules: ["vfio-pci", "vfio"] }).text, mods)).toBe("sd-mod,vfio_pci,vfio");
  });

  it("refuses a module the kernel does not have (vfio_virqfd was merged into vfio in Linux 6.2)", () => {
    const kernel: KernelModules = {
      release: "6.6.58-0-lts",
      loadable: { vfio: "kernel/drivers/vfio/vfio.ko.gz", vfio_pci: "kernel/drivers/vfio/pci/vfio-pci.ko.gz", vfio_iommu_type1: "kernel/drivers/vfio/vfio_iommu_type1.ko.gz" },
      builtin: {},
    };
    expect(() => planUpdateExtlinuxConf({ text: alpineUpdateExtlinuxConf, ensure: ["iommu=pt"], modules: VFIO_MODULES, kernel })).toThrow(
      'modules: kernel 6.6.58-0-lts has no "vfio_virqfd" (neither in modules.dep nor in modules.builtin); remove it from `modules`',
    );
  });

  it("adds both lines when the file lacks them, and takes both away on revert", () => {
    const text = "overwrite=1\ntimeout=3";
    const plan = planUpdateExtlinuxConf({ text, ensure: ["iommu=pt"], modules: ["vfio-pci"] });
    expect(plan.text).toBe("overwrite=1\ntimeout=3\ndefault_kernel_opts=iommu=pt\nmodules=vfio-pci\n");
    expect(revertUpdateExtlinuxConf(plan.text, plan.owned)).toBe(text);
    const again = planUpdateExtlinuxConf({ text: plan.text, ensure: ["iommu=pt"], modules: ["vfio-pci"], previouslyOwned: plan.owned });
    expect(again.text).toBe(plan.text);
  });
});

const moduleList = fc
  .array(fc.constantFrom("sd-mod", "usb-storage", "ext4", "virtio_blk", "nvme", "vfio", "vfio_pci", "dm-crypt"), { maxLength: 6 })
  .map((modules) => modules.join(","));

/** /etc/update-extlinux.conf with both variables written in arbitrary ways, in either order, or absent. */
const extlinuxFile = fc
  .record({
    opts: fc.option(kernelLineWithOwnKeys.chain((v) => shellAssignment("default_kernel_opts", v)), { nil: undefined, freq: 5 }),
    mods: fc.option(moduleList.chain((v) => shellAssignment("modules", v)), { nil: undefined, freq: 5 }),
    others: fc.array(otherShellLine, { minLength: 3, maxLength: 3 }),
    modulesFirst: fc.boolean(),
    finalNewline: fc.boolean(),
  })
  .map(({ opts, mods, others, modulesFirst, finalNewline }) => {
    const [a, b] = modulesFirst ? [mods, opts] : [opts, mods];
    const lines = [others[0], ...(a ? [a] : []), others[1], ...(b ? [b] : []), others[2]];
    return lines.join("\n") + (finalNewline ? "\n" : "");
  });

const requestedModules = fc.subarray(VFIO_MODULES);

describe("planUpdateExtlinuxConf properties", () => {
  it("revert(apply(file)) restores the original bytes", () => {
    fc.assert(
      fc.property(extlinuxFile, ensureArgs, requestedModules, (text, ensure, modules) => {
        const plan = planUpdateExtlinuxConf({ text, ensure, modules });
        expect(revertUpdateExtlinuxConf(plan.text, plan.owned)).toBe(text);
      }),
    );
  });

  it("applying twice equals applying once", () => {
    fc.assert(
      fc.property(extlinuxFile, ensureArgs, requestedModules, (text, ensure, modules) => {
        const once = planUpdateExtlinuxConf({ text, ensure, modules });
        const twice = planUpdateExtlinuxConf({ text: once.text, ensure, modules, previouslyOwned: once.owned });
        expect(twice).toEqual({ ...once, changes: [] });
      }),
    );
  });

  it("keeps the user's modules in order and adds ours after them", () => {
    fc.assert(
      fc.property(extlinuxFile, requestedModules, (text, modules) => {
        const before = shellVariableValue(text, mods).split(",").filter((m) => m !== "");
        const after = shellVariableValue(planUpdateExtlinuxConf({ text, ensure: [], modules }).text, mods).split(",");
        expect(after.slice(0, before.length)).toEqual(before);
        const norm = (m: string) => m.replace(/-/g, "_");
        expect(modules.every((m) => after.map(norm).includes(norm(m)))).toBe(true);
      }),
    );
  });
});

describe("extlinuxCfgHasArgs", () => {
  it("fails on /boot/extlinux.conf before update-extlinux ran", () => {
    expect(extlinuxCfgHasArgs(alpineExtlinuxConf, ["intel_iommu=on", "iommu=pt"], VFIO_MODULES)).toEqual({
      ok: false,
      problems: [
        "/boot/extlinux.conf line 13 (LABEL lts): APPEND lacks intel_iommu=on iommu=pt and modules vfio,vfio-pci,vfio_iommu_type1,vfio_virqfd; run update-extlinux",
      ],
    });
  });

  it("passes on the file update-extlinux writes from the planned config", () => {
    expect(extlinuxCfgHasArgs(alpineExtlinuxConfWithVfio, ["intel_iommu=on", "iommu=pt"], VFIO_MODULES)).toEqual({ ok: true, problems: [] });
  });

  it("reports a file without APPEND", () => {
    expect(extlinuxCfgHasArgs("DEFAULT menu.c32\n", ["iommu=pt"], [])).toEqual({
      ok: false,
      problems: ["/boot/extlinux.conf has no APPEND line; run update-extlinux"],
    });
  });
});

describe("planUpdateExtlinuxConf after a run that died before Pulumi recorded its state", () => {
  it("write, lose the state, plan again with the backup, revert: the original bytes", () => {
    fc.assert(
      fc.property(extlinuxFile, ensureArgs, requestedModules, fc.subarray(["nomodeset", "quiet"]), (original, ensure, modules, remove) => {
        const written = planUpdateExtlinuxConf({ text: original, ensure, modules, remove });
        const again = planUpdateExtlinuxConf({ text: written.text, ensure, modules, remove, backup: original });
        expect(again.text).toBe(written.text);
        expect(again.changes).toEqual([]);
        expect(revertUpdateExtlinuxConf(written.text, again.owned)).toBe(original);
      }),
    );
  });

  it("on the reference host, without the backup the args would stay after destroy", () => {
    const request = { ensure: ["intel_iommu=on", "iommu=pt"], modules: VFIO_MODULES };
    const written = planUpdateExtlinuxConf({ text: alpineUpdateExtlinuxConf, ...request }).text;
    expect(revertUpdateExtlinuxConf(written, planUpdateExtlinuxConf({ text: written, ...request }).owned)).toBe(written);
    expect(revertUpdateExtlinuxConf(written, planUpdateExtlinuxConf({ text: written, ...request, backup: alpineUpdateExtlinuxConf }).owned)).toBe(
      alpineUpdateExtlinuxConf,
    );
  });

  it("owns the modules it recognises even when default_kernel_opts was edited by hand", () => {
    const request = { ensure: ["iommu=pt"], modules: ["vfio"] };
    const written = planUpdateExtlinuxConf({ text: alpineUpdateExtlinuxConf, ...request }).text;
    const edited = written.replace("iommu=pt", "iommu=pt nosmt");
    const again = planUpdateExtlinuxConf({ text: edited, ...request, backup: alpineUpdateExtlinuxConf });
    expect(revertUpdateExtlinuxConf(edited, again.owned)).toBe(alpineUpdateExtlinuxConf.replace("rootfstype=ext4", "rootfstype=ext4 iommu=pt nosmt"));
  });
});
