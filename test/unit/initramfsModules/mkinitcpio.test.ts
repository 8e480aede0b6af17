import { execFileSync } from "child_process";
import fc from "fast-check";
import {
  bashArrayValue,
  dropInUnreadReason,
  MKINITCPIO_LISTING,
  MKINITCPIO_REBUILD,
  MKINITCPIO_SECTIONS,
  mkinitcpioHooksProblem,
  parseMkinitcpioVersion,
  planMkinitcpioModules,
  renderMkinitcpioDropIn,
  revertMkinitcpioModules,
} from "../../../providers/initramfsModules/mkinitcpio";
import { missingFromInitramfs, moduleListForKernel } from "../../../providers/kernel/modules";
import { alpine66Kernel, archLsinitcpio, archMkinitcpioConf, archV35Preset, archV39Preset, debianKernel } from "./fixtures";

const VFIO = ["vfio", "vfio_pci", "vfio_iommu_type1"];
/** What `grep -H '^[[:space:]]*[A-Za-z_]*_config=' /etc/mkinitcpio.d/*.preset` prints for one preset file. */
const grepConfig = (file: string, text: string) =>
  text
    .split("\n")
    .filter((line) => /^[ \t]*[A-Za-z_]*_config=/.test(line))
    .map((line) => `${file}:${line}`)
    .join("\n");

/** MODULES as bash sees it after sourcing `text`: the truth the planner's edits are checked against. */
function modulesForBash(text: string): string[] {
  const out = execFileSync("bash", ["-c", `${text}\nprintf '%s\\n' "\${MODULES[@]}"`]).toString();
  return out.split("\n").filter((word) => word !== "");
}

describe("the drop-in", () => {
  it("appends the loadable VFIO modules to MODULES, after whatever mkinitcpio.conf set", () => {
    const dropIn = renderMkinitcpioDropIn(moduleListForKernel(alpine66Kernel));
    expect(dropIn).toBe("# Managed by vfio-host (Pulumi InitramfsModules); changes here are overwritten.\nMODULES+=(vfio vfio_pci vfio_iommu_type1)\n");
    // mkinitcpio appends each drop-in to mkinitcpio.conf and sources the whole.
    expect(modulesForBash(archMkinitcpioConf.replace("MODULES=()", "MODULES=(nvme)") + dropIn)).toEqual(["nvme", ...VFIO]);
    expect(renderMkinitcpioDropIn(moduleListForKernel(debianKernel))).toContain("MODULES+=(vfio vfio_pci vfio_iommu_type1 vfio_virqfd)\n");
  });

  it("is read from mkinitcpio 36 on, unless a preset names a config file (presets written before 36 do)", () => {
    expect(parseMkinitcpioVersion('mkinitcpio "39.2"\n')).toBe(39);
    expect(parseMkinitcpioVersion('mkinitcpio "35"\n')).toBe(35);
    expect(parseMkinitcpioVersion("")).toBeUndefined();
    expect(dropInUnreadReason(39, grepConfig("/etc/mkinitcpio.d/linux.preset", archV39Preset))).toBeUndefined();
    expect(dropInUnreadReason(39, grepConfig("/etc/mkinitcpio.d/linux.preset", archV35Preset))).toBe(
      "/etc/mkinitcpio.d/linux.preset sets ALL_config=, so `mkinitcpio -P` passes -c and skips /etc/mkinitcpio.conf.d; comment it out " +
        "(stock presets since mkinitcpio 36 do) to let vfio-host keep its modules in a file of its own",
    );
    expect(dropInUnreadReason(35, "")).toBe("mkinitcpio 35 reads no /etc/mkinitcpio.conf.d (v36 added it)");
    expect(dropInUnreadReason(undefined, "")).toBe("mkinitcpio is not installed");
  });
});

describe("planMkinitcpioModules (mkinitcpio.conf itself, where the drop-in is not read)", () => {
  it("adds the modules to Arch's stock MODULES=() and takes them back on revert, byte for byte", () => {
    const plan = planMkinitcpioModules({ text: archMkinitcpioConf, modules: VFIO });
    expect(plan.changes).toEqual(["+ vfio", "+ vfio_pci", "+ vfio_iommu_type1"]);
    expect(plan.text).toBe(archMkinitcpioConf.replace("\nMODULES=()\n", "\nMODULES=(vfio vfio_pci vfio_iommu_type1)\n"));
    expect(modulesForBash(plan.text)).toEqual(VFIO);
    expect(revertMkinitcpioModules(plan.text, plan.owned)).toBe(archMkinitcpioConf);
  });

  it("counts a module already listed in either spelling or with mkinitcpio's `?`, and keeps it on revert", () => {
    const text = "MODULES=(vfio-pci vfio? nvme)\n";
    const plan = planMkinitcpioModules({ text, modules: VFIO });
    expect(plan.text).toBe("MODULES=(vfio-pci vfio? nvme vfio_iommu_type1)\n");
    expect(revertMkinitcpioModules(plan.text, plan.owned)).toBe(text);
  });

  it("edits the assignment bash keeps (the last plain one), not a commented example or an earlier one", () => {
    const text = "#     MODULES=(usbhid xhci_hcd)\nMODULES=(old)\nMODULES=(\n  nvme\n)\nMODULES+=(ext4)\n";
    const plan = planMkinitcpioModules({ text, modules: VFIO });
    expect(plan.text).toBe("#     MODULES=(usbhid xhci_hcd)\nMODULES=(old)\nMODULES=(\n  nvme vfio vfio_pci vfio_iommu_type1\n)\nMODULES+=(ext4)\n");
    expect(modulesForBash(plan.text)).toEqual(["nvme", ...VFIO, "ext4"]);
  });

  it("recognises its own earlier edit from the backup when the state was lost", () => {
    const first = planMkinitcpioModules({ text: archMkinitcpioConf, modules: VFIO });
    const again = planMkinitcpioModules({ text: first.text, modules: VFIO, backup: archMkinitcpioConf });
    expect(again.owned).toEqual(first.owned);
    expect(revertMkinitcpioModules(again.text, again.owned)).toBe(archMkinitcpioConf);
  });

  it("refuses a file without MODULES=(...), and an array it would have to guess at", () => {
    expect(() => planMkinitcpioModules({ text: "HOOKS=(base udev)\n", modules: VFIO })).toThrow(
      "/etc/mkinitcpio.conf has no MODULES=(...) line to add the VFIO modules to; put back the stock line MODULES=()",
    );
    expect(() => planMkinitcpioModules({ text: 'HOOKS=(base)\nMODULES=("$extra" nvme)\n', modules: VFIO })).toThrow(
      "/etc/mkinitcpio.conf line 2: MODULES=(...) holds quotes, expansions or comments, which vfio-host does not edit; write the module names as plain words, e.g. MODULES=(vfio_pci nvme)",
    );
    expect(() => planMkinitcpioModules({ text: "MODULES=(nvme # disk\n)\n", modules: VFIO })).toThrow(/line 1: MODULES=\(\.\.\.\) holds quotes/);
    expect(() => planMkinitcpioModules({ text: "MODULES=(nvme\n", modules: VFIO })).toThrow("/etc/mkinitcpio.conf line 1: MODULES=(...) never ends");
  });

  const word = fc.constantFrom("nvme", "i915", "amdgpu", "vfio", "vfio-pci", "vfio_pci?", "usbhid", "xhci_hcd", "vfio_iommu_type1");
  const conf = fc
    .record({
      words: fc.array(word, { maxLength: 6 }),
      gaps: fc.array(fc.constantFrom(" ", "  ", "\t", "\n  "), { minLength: 6, maxLength: 6 }),
      inner: fc.constantFrom(["", ""], [" ", " "], ["\n  ", "\n"]),
      before: fc.constantFrom("", "# MODULES\n#     MODULES=(usbhid xhci_hcd)\n", "MODULES=(ignored)\n"),
      after: fc.constantFrom("", "\nBINARIES=()\n", "\nMODULES+=(ext4)\n", "\nHOOKS=(base udev modconf)"),
    })
    .map(({ words, gaps, inner, before, after }) => `${before}MODULES=(${inner[0]}${words.map((w, i) => (i === 0 ? w : gaps[i] + w)).join("")}${inner[1]})${after}`);
  const wanted = fc.subarray(["vfio", "vfio_pci", "vfio_iommu_type1", "vfio_virqfd"], { minLength: 1 });

  it("property: bash sees every wanted module afterwards, keeps every word it had, and a revert gives the bytes back", () => {
    fc.assert(
      fc.property(conf, wanted, (text, modules) => {
        const plan = planMkinitcpioModules({ text, modules });
        const seen = modulesForBash(plan.text).map((w) => w.replace(/\?$/, "").replace(/-/g, "_"));
        expect(modules.every((m) => seen.includes(m))).toBe(true);
        const added = [...plan.owned.added];
        const kept = modulesForBash(plan.text).filter((w) => (added.includes(w) ? (added.splice(added.indexOf(w), 1), false) : true));
        expect(kept).toEqual(modulesForBash(text));
        expect(revertMkinitcpioModules(plan.text, plan.owned)).toBe(text);
      }),
      { numRuns: 60 },
    );
  });

  it("property: planning twice with the first ownership changes nothing, and dropping a module takes only it back", () => {
    fc.assert(
      fc.property(conf, wanted, (text, modules) => {
        const first = planMkinitcpioModules({ text, modules });
        const second = planMkinitcpioModules({ text: first.text, modules, previouslyOwned: first.owned });
        expect(second.text).toBe(first.text);
        expect(second.owned).toEqual(first.owned);
        const fewer = planMkinitcpioModules({ text: first.text, modules: modules.slice(1), previouslyOwned: first.owned });
        expect(fewer.text).toBe(planMkinitcpioModules({ text, modules: modules.slice(1) }).text);
      }),
      { numRuns: 100 },
    );
  });
});

describe("mkinitcpioHooksProblem", () => {
  it("passes the stock HOOKS, which have modconf, and refuses HOOKS without it, naming the fix", () => {
    expect(mkinitcpioHooksProblem(archMkinitcpioConf)).toBeUndefined();
    const noModconf = archMkinitcpioConf.replace(/^HOOKS=\(.*\)$/m, "HOOKS=(base udev autodetect block filesystems fsck)");
    expect(mkinitcpioHooksProblem(noModconf)).toBe(
      "HOOKS=(base udev autodetect block filesystems fsck) in /etc/mkinitcpio.conf lacks modconf, so /etc/modprobe.d (vfio-pci's ids= and " +
        "softdeps) stays out of the image and vfio-pci would claim nothing at boot; add modconf after udev or systemd, as the stock HOOKS have it",
    );
    // A drop-in (appended after mkinitcpio.conf) that sets HOOKS wins, as it does for mkinitcpio.
    expect(mkinitcpioHooksProblem(`${noModconf}HOOKS=(base systemd modconf block filesystems)\n`)).toBeUndefined();
    expect(bashArrayValue(`${archMkinitcpioConf}HOOKS+=(lvm2)\n`, "HOOKS", "x")?.slice(-2)).toEqual(["fsck", "lvm2"]);
  });
});

describe("the image", () => {
  it("lsinitcpio's listing is one path per line, which missingFromInitramfs reads as it is", () => {
    expect(missingFromInitramfs(archLsinitcpio, moduleListForKernel(alpine66Kernel))).toEqual([]);
    expect(missingFromInitramfs(archLsinitcpio, moduleListForKernel(debianKernel))).toEqual(["vfio_virqfd"]);
  });

  it("rebuilds every preset, and its shell parses", () => {
    expect(MKINITCPIO_REBUILD).toEqual(["mkinitcpio", "-P"]);
    for (const snippet of [MKINITCPIO_LISTING, ...Object.values(MKINITCPIO_SECTIONS)]) {
      expect(() => execFileSync("sh", ["-n", "-c", snippet])).not.toThrow();
    }
  });
});
