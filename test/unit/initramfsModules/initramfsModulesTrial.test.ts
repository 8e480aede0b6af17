// InitramfsModules on a stack that boots changes once first: initramfs-tools changes are staged and
// preview names the trial once, only when there is something to do; mkinitfs never stages.
import fc from "fast-check";
import { Staging } from "../../../providers/bootTrial/host";
import { trialPlanLine } from "../../../providers/bootTrial/plan";
import { INITRAMFS_TOOLS_MODULES_PATH } from "../../../providers/initramfsModules/initramfsTools";
import { MKINITFS_CONF_PATH } from "../../../providers/initramfsModules/mkinitfs";
import { InitramfsModulesInputs, InitramfsState, planInitramfs } from "../../../providers/initramfsModules/resource";
import { alpine66Kernel, alpine66MkinitfsList, alpineMkinitfsConf, debianInitramfsToolsModules, debianKernel, debianLsinitramfsAfter, debianLsinitramfsBefore } from "./fixtures";

const staging: Staging = { stage: true, loader: "grub", line: trialPlanLine({ loader: "grub" }) };
const unsupported: Staging = { stage: false, line: trialPlanLine({ unsupported: "the host lacks mkinitramfs" }) };
const count = (lines: readonly string[], line: string | undefined) => lines.filter((l) => l === line).length;
const inputs = InitramfsModulesInputs.parse({ trial: true });

/** Debian 12 before the modules were added: the stock modules file and an image without vfio. */
const debianFacts = {
  kernel: debianKernel,
  systems: ["initramfs-tools" as const],
  files: { [INITRAMFS_TOOLS_MODULES_PATH]: debianInitramfsToolsModules },
  listing: { "initramfs-tools": debianLsinitramfsBefore, mkinitfs: "" },
};
const first = planInitramfs(inputs, debianFacts, undefined);
const written = first.files[0].after;
const recorded: InitramfsState = { system: "initramfs-tools", release: debianKernel.release, owned: first.owned, triggers: [] };
const REBUILD = "rebuild the initramfs of 6.1.0-18-amd64 (update-initramfs -u -k 6.1.0-18-amd64)";

describe("planInitramfs with staging on initramfs-tools", () => {
  it("describes the modules file, the rebuild and then the trial, once", () => {
    const plan = planInitramfs(inputs, debianFacts, undefined, staging);
    expect(plan.staging).toEqual(staging);
    expect(plan.changes).toEqual([...first.changes, staging.line]);
    expect(plan.changes[plan.changes.length - 2]).toBe(`${REBUILD}: its configuration changed`);
    expect(count(plan.changes, staging.line)).toBe(1);
    expect(plan.files).toEqual(first.files);
  });

  it("names the trial for a rebuild alone: an image that lacks the modules, or new triggers", () => {
    const lacking = planInitramfs(inputs, { ...debianFacts, files: { [INITRAMFS_TOOLS_MODULES_PATH]: written } }, recorded, staging);
    expect(lacking.changes).toEqual([`${REBUILD}: the image lacks vfio, vfio_pci, vfio_iommu_type1, vfio_virqfd`, staging.line]);
    const triggered = planInitramfs(inputs, { ...debianFacts, files: { [INITRAMFS_TOOLS_MODULES_PATH]: written }, listing: { ...debianFacts.listing, "initramfs-tools": debianLsinitramfsAfter } }, { ...recorded, triggers: ["old"] }, staging);
    expect(triggered.changes).toEqual([`${REBUILD}: its triggers changed`, staging.line]);
  });

  it("describes nothing, and no trial, when the file and the image are already right", () => {
    const settled = { ...debianFacts, files: { [INITRAMFS_TOOLS_MODULES_PATH]: written }, listing: { ...debianFacts.listing, "initramfs-tools": debianLsinitramfsAfter } };
    const plan = planInitramfs(inputs, settled, recorded, staging);
    expect(plan.rebuild).toBeUndefined();
    expect(plan.changes).toEqual([]);
  });

  it("says, on a host without trial boots, that the change becomes permanent before the reboot", () => {
    const plan = planInitramfs(inputs, debianFacts, undefined, unsupported);
    expect(plan.staging).toEqual(unsupported);
    expect(plan.changes).toEqual([...first.changes, unsupported.line]);
  });

  it("adds no trial line without staging", () => {
    expect(first.changes.some((c) => c.includes("trial") || c.includes("one-shot"))).toBe(false);
    expect(first.staging).toEqual({ stage: false });
  });
});

describe("planInitramfs with staging on mkinitfs", () => {
  const alpineFacts = {
    kernel: alpine66Kernel,
    systems: ["mkinitfs" as const],
    files: { [MKINITFS_CONF_PATH]: alpineMkinitfsConf },
    listing: { "initramfs-tools": "", mkinitfs: alpine66MkinitfsList },
  };

  it("never stages: mkinitfs changes are written and rebuilt as they always were, and preview names no trial", () => {
    const plan = planInitramfs(inputs, alpineFacts, undefined, staging);
    expect(plan.system).toBe("mkinitfs");
    expect(plan.staging).toEqual({ stage: false });
    expect(plan.changes.length).toBeGreaterThan(0);
    expect(plan.changes).toEqual(planInitramfs(inputs, alpineFacts, undefined).changes);
    expect(count(plan.changes, staging.line)).toBe(0);
  });
});

describe("planInitramfs staging properties", () => {
  const userLine = fc.oneof(
    fc.constantFrom("", "# List of modules that you want to include in your initramfs.", "raid1", "dm_crypt", "vfio", "vfio-pci", "vfio_pci ids=8086:3a67"),
    fc.stringMatching(/^[a-z][a-z0-9_-]{0,10}$/),
  );
  const modulesFile = fc.option(
    fc.tuple(fc.array(userLine, { maxLength: 8 }), fc.boolean()).map(([lines, newline]) => lines.join("\n") + (newline ? "\n" : "")),
    { nil: undefined },
  );

  it("staging adds the trial line once at the end when there is anything to do, and changes nothing else", () => {
    fc.assert(
      fc.property(
        modulesFile,
        fc.boolean(),
        fc.boolean(),
        fc.option(fc.constantFrom<unknown[]>([], ["old"]), { nil: undefined }),
        fc.constantFrom(staging, unsupported),
        (file, applied, imageHasModules, triggers, given) => {
          const facts = {
            ...debianFacts,
            files: { [INITRAMFS_TOOLS_MODULES_PATH]: applied ? planInitramfs(inputs, { ...debianFacts, files: { [INITRAMFS_TOOLS_MODULES_PATH]: file } }, undefined).files[0]?.after ?? file : file },
            listing: { ...debianFacts.listing, "initramfs-tools": imageHasModules ? debianLsinitramfsAfter : debianLsinitramfsBefore },
          };
          const state = triggers === undefined ? undefined : { ...recorded, triggers };
          const plain = planInitramfs(inputs, facts, state);
          const staged = planInitramfs(inputs, facts, state, given);
          expect(staged.changes).toEqual(plain.changes.length === 0 ? [] : [...plain.changes, given.line]);
          expect({ ...staged, changes: plain.changes, staging: plain.staging }).toEqual(plain);
        },
      ),
    );
  });
});
