// InitramfsModules: the VFIO modules (and /etc/modprobe.d, which both initramfs builders copy) in
// the early initramfs of the kernel that boots next, so vfio-pci can claim devices before their
// host drivers. Debian/Ubuntu: /etc/initramfs-tools/modules + update-initramfs; Alpine:
// features.d/vfio.modules listed in mkinitfs.conf features= + mkinitfs.
import * as pulumi from "@pulumi/pulumi";
import { isDeepStrictEqual } from "util";
import { z } from "zod";
import { prefetchBootReads, registerBootReads } from "../bootReads";
import { readStaging, stagedFile, Staging } from "../bootTrial/host";
import { StagedFile } from "../bootTrial/plan";
import { failpoint } from "../failpoint";
import { readBackupTexts, restoreWholeFile, staleBackupRefusal } from "../hostFile";
import { HostResource, hostResourceProvider, InputError } from "../hostResource";
import { KernelModules, missingFromInitramfs, moduleListForKernel, VfioModule } from "../kernel/modules";
import { KERNEL_SECTIONS, NEXT_KERNEL, parseNextKernel } from "../kernel/nextKernel";
import { ConnectionInput } from "../ssh/connection";
import { RemoteHost, sha256Hex } from "../ssh/host";
import { catFile, fileFromSection, readSections } from "../ssh/sections";
import { ShellListOwnership } from "../text/shellVariable";
import { TokenOwnership } from "../text/tokenList";
import { INITRAMFS_TOOLS_MODULES_PATH, planInitramfsToolsModules, revertInitramfsToolsModules } from "./initramfsTools";
import { MKINITFS_CONF_PATH, planMkinitfsFeatures, renderVfioFeatureModules, revertMkinitfsFeatures, VFIO_FEATURE_MODULES_PATH } from "./mkinitfs";

export const InitramfsModulesInputs = z.strictObject({
  system: z.enum(["auto", "initramfs-tools", "mkinitfs"]).default("auto"),
  /** Whatever else must be in the image, e.g. VfioBinding's modprobe.d content: a change rebuilds it. */
  triggers: z.array(z.unknown()).default([]),
  /** The stack boots changes once as a trial first: stage them for HostReboot instead of writing them (initramfs-tools only). */
  trial: z.boolean().default(false),
  /**
   * Rebuild the image when this resource is deleted. VfioHost turns it off: its VfioBinding is
   * deleted right after this resource and rebuilds the image then, so one rebuild is enough.
   */
  rebuildOnDelete: z.boolean().default(true),
});
type Inputs = z.output<typeof InitramfsModulesInputs>;
type System = "initramfs-tools" | "mkinitfs";

export interface InitramfsState {
  system: System;
  release: string;
  owned: TokenOwnership | ShellListOwnership;
  triggers: unknown[];
  /** mkinitfs: what this stack last wrote to the features.d file (absent in state recorded before it was kept). */
  featureSha256?: string;
  /** Staged for a trial boot instead of written and rebuilt (HostReboot builds the trial's image). */
  staged?: StagedFile[];
  stagedRebuild?: boolean;
}

interface FileChange {
  path: string;
  before: string | undefined;
  after: string;
}

interface InitramfsPlan {
  system: System;
  kernel: KernelModules;
  modules: VfioModule[];
  files: FileChange[];
  owned: InitramfsState["owned"];
  changes: string[];
  /** Why the image must be rebuilt, or undefined. */
  rebuild?: string;
  /** The modules the live image lacks. */
  missing: string[];
  featureSha256?: string;
  /** Planned without state: why creating the resource must not write (see staleBackupRefusal). */
  refusal?: string;
  staging: Staging;
}

const systems = {
  "initramfs-tools": {
    rebuild: (release: string) => ["update-initramfs", "-u", "-k", release],
    listing: `lsinitramfs "/boot/initrd.img-$release"`,
  },
  mkinitfs: {
    rebuild: (release: string) => ["mkinitfs", release],
    // Alpine keeps one image per flavour; list what is in it now.
    listing: `f=/boot/initramfs-\${release##*-}; [ -e "$f" ] || f=$(ls /boot/initramfs-* | head -n 1); zcat "$f" | cpio -t`,
  },
};

async function readInitramfsFacts(host: RemoteHost) {
  const s = await readSections(host, {
    ...KERNEL_SECTIONS,
    system: "command -v update-initramfs >/dev/null && echo initramfs-tools; command -v mkinitfs >/dev/null && echo mkinitfs",
    modulesFile: catFile(INITRAMFS_TOOLS_MODULES_PATH),
    mkinitfsConf: catFile(MKINITFS_CONF_PATH),
    featureFile: catFile(VFIO_FEATURE_MODULES_PATH),
    toolsListing: systems["initramfs-tools"].listing,
    mkinitfsListing: systems.mkinitfs.listing,
  }, { prelude: NEXT_KERNEL });
  return {
    kernel: parseNextKernel(s),
    systems: s.system.split("\n").filter(Boolean) as System[],
    modulesFile: fileFromSection(s.modulesFile),
    mkinitfsConf: fileFromSection(s.mkinitfsConf),
    featureFile: fileFromSection(s.featureFile),
    listing: { "initramfs-tools": s.toolsListing, mkinitfs: s.mkinitfsListing },
  };
}
/** Read only without state: vfio-host's backups of the files, to recognise what a run that died before recording its state wrote. */
async function readInitramfsBackups(host: RemoteHost) {
  const [[modulesFile, mkinitfsConf], featureFile] = await Promise.all([
    readBackupTexts(host, [INITRAMFS_TOOLS_MODULES_PATH, MKINITFS_CONF_PATH]),
    host.readBackup(VFIO_FEATURE_MODULES_PATH),
  ]);
  return { modulesFile, mkinitfsConf, featureFile };
}
/** The plan's reads, at once; without state the backups too. */
const readInitramfsPlanFacts = (host: RemoteHost, trial: boolean, withBackups: boolean) =>
  Promise.all([readInitramfsFacts(host), withBackups ? readInitramfsBackups(host) : undefined, readStaging(host, trial)]);
registerBootReads((host, trial) => readInitramfsPlanFacts(host, trial, true));

type InitramfsFacts = Awaited<ReturnType<typeof readInitramfsFacts>> & { backups?: Awaited<ReturnType<typeof readInitramfsBackups>> };

/** Pure: which files change and whether the image must be rebuilt. */
export function planInitramfs(inputs: Inputs, facts: InitramfsFacts, state: InitramfsState | undefined, staging: Staging = { stage: false }): InitramfsPlan {
  const system = inputs.system !== "auto" ? inputs.system : facts.systems[0];
  if (!system || !facts.systems.includes(system)) {
    throw new InputError(
      "system",
      inputs.system === "auto"
        ? "the host has neither update-initramfs (Debian: apt install initramfs-tools) nor mkinitfs (Alpine: apk add mkinitfs)"
        : `system: "${inputs.system}" but the host has no ${inputs.system === "mkinitfs" ? "mkinitfs" : "update-initramfs"}`,
    );
  }
  const modules = moduleListForKernel(facts.kernel);
  const previous = state?.system === system ? state.owned : undefined;
  let files: FileChange[];
  let owned: InitramfsState["owned"];
  let changes: string[];
  let featureSha256: string | undefined;
  let refusal: string | undefined;
  if (system === "initramfs-tools") {
    const before = facts.modulesFile ?? "";
    const plan = planInitramfsToolsModules({
      text: before,
      modules: modules.filter((m) => !m.builtin).map((m) => m.name),
      previouslyOwned: previous as TokenOwnership,
      backup: facts.backups?.modulesFile,
    });
    files = [{ path: INITRAMFS_TOOLS_MODULES_PATH, before: facts.modulesFile, after: plan.text }];
    owned = plan.owned;
    changes = plan.changes.map((c) => `${INITRAMFS_TOOLS_MODULES_PATH}: ${c}`);
  } else {
    if (facts.mkinitfsConf === undefined) throw new InputError("system", `${MKINITFS_CONF_PATH} is missing; reinstall mkinitfs`);
    const conf = planMkinitfsFeatures({ text: facts.mkinitfsConf, previouslyOwned: previous as ShellListOwnership, backup: facts.backups?.mkinitfsConf });
    const feature = renderVfioFeatureModules(modules);
    featureSha256 = sha256Hex(feature);
    const current = facts.featureFile === undefined ? undefined : Buffer.from(facts.featureFile);
    refusal = facts.backups && staleBackupRefusal(VFIO_FEATURE_MODULES_PATH, feature, current, facts.backups.featureFile);
    files = [
      { path: VFIO_FEATURE_MODULES_PATH, before: facts.featureFile, after: feature },
      { path: MKINITFS_CONF_PATH, before: facts.mkinitfsConf, after: conf.text },
    ];
    owned = conf.owned;
    changes = [
      ...(facts.featureFile !== feature ? [`${VFIO_FEATURE_MODULES_PATH}: ${facts.featureFile === undefined ? "create" : "rewrite"} with ${modules.filter((m) => !m.builtin).map((m) => m.fileName).join(", ")}`] : []),
      ...conf.changes.map((c) => `${MKINITFS_CONF_PATH}: features: ${c}`),
    ];
  }
  const written = files.filter((f) => f.before !== f.after);
  const missing = missingFromInitramfs(facts.listing[system], modules);
  const rebuild =
    written.length > 0
      ? "its configuration changed"
      : missing.length > 0
        ? `the image lacks ${missing.join(", ")}`
        : state && !isDeepStrictEqual(state.triggers, inputs.triggers)
          ? "its triggers changed"
          : undefined;
  // Trial boots build initramfs-tools images (mkinitramfs -d); mkinitfs changes are written as they always were.
  const staged = system === "initramfs-tools" ? staging : { stage: false };
  const all = [...changes, ...(rebuild ? [`rebuild the initramfs of ${facts.kernel.release} (${systems[system].rebuild(facts.kernel.release).join(" ")}): ${rebuild}`] : [])];
  return {
    system,
    kernel: facts.kernel,
    modules,
    files: written,
    owned,
    changes: all.length > 0 && staged.line ? [...all, staged.line] : all,
    rebuild,
    missing,
    featureSha256,
    refusal,
    staging: staged,
  };
}

async function rebuildAndVerify(host: RemoteHost, system: System, release: string, modules: VfioModule[]) {
  console.error(`${host.label}: rebuilding the initramfs of ${release} (this takes a while)`);
  await failpoint("initramfs.rebuild");
  await host.run(systems[system].rebuild(release), { timeoutMs: 30 * 60_000 });
  const listing = await readSections(host, { listing: `release=$1; ${systems[system].listing}` }, { args: [release] });
  const missing = missingFromInitramfs(listing.listing, modules);
  if (missing.length > 0) {
    throw new Error(`the rebuilt initramfs of ${release} still lacks ${missing.join(", ")}; see ${systems[system].rebuild(release).join(" ")}`);
  }
}

export const initramfsModulesProvider = hostResourceProvider<Inputs, InitramfsPlan, InitramfsState>({
  schema: InitramfsModulesInputs,
  identity: () => "initramfs",
  prefetch: prefetchBootReads,
  plan: async (host, inputs, state) => {
    const [facts, backups, staging] = await readInitramfsPlanFacts(host, inputs.trial, state === undefined);
    return planInitramfs(inputs, { ...facts, backups }, state, staging);
  },
  describe: (plan) => plan.changes,
  async apply(host, plan, inputs) {
    if (plan.refusal) throw new Error(plan.refusal);
    const recorded = { system: plan.system, release: plan.kernel.release, owned: plan.owned, triggers: inputs.triggers, featureSha256: plan.featureSha256 };
    if (plan.staging.stage) {
      // A changed modules list or modprobe.d (the triggers) is staged as files, which build the trial's image;
      // only a live image that lacks modules needs a rebuild on its own.
      return { ...recorded, staged: plan.files.map((f) => stagedFile(f.path, f.before, f.after)), stagedRebuild: plan.files.length === 0 && plan.missing.length > 0 };
    }
    for (const file of plan.files) {
      await host.backupOnce(file.path);
      await host.writeFileAtomic(file.path, file.after);
    }
    if (plan.rebuild) await rebuildAndVerify(host, plan.system, plan.kernel.release, plan.modules);
    return recorded;
  },
  async revert(host, inputs, state) {
    if (state.system === "initramfs-tools") {
      const current = (await host.readFile(INITRAMFS_TOOLS_MODULES_PATH))?.toString("utf8");
      if (current !== undefined) await host.revertFile(INITRAMFS_TOOLS_MODULES_PATH, revertInitramfsToolsModules(current, state.owned as TokenOwnership));
    } else {
      const conf = (await host.readFile(MKINITFS_CONF_PATH))?.toString("utf8");
      if (conf !== undefined) await host.revertFile(MKINITFS_CONF_PATH, revertMkinitfsFeatures(conf, state.owned as ShellListOwnership));
      const written = state.featureSha256 ?? (await featureShaNow(host));
      await restoreWholeFile(host, VFIO_FEATURE_MODULES_PATH, written, `mkinitfs ${state.release}`);
    }
    if (inputs.rebuildOnDelete) await rebuildInitramfs(host, state.system, state.release);
  },
});

/**
 * For state recorded before the hash was kept: the features.d file as this resource would write it
 * now. A kernel whose modules moved since (or that has none) gives no match, and the file is then
 * kept, with the message that says how to put the original back, rather than lost.
 */
async function featureShaNow(host: RemoteHost): Promise<string> {
  try {
    return sha256Hex(renderVfioFeatureModules(moduleListForKernel((await readInitramfsFacts(host)).kernel)));
  } catch {
    return "unknown";
  }
}

/**
 * Rebuilds the next kernel's image without checking its contents: after VfioBinding's delete, so
 * the image stops carrying the modprobe.d file (Pulumi deletes InitramfsModules first, as it
 * depends on VfioBinding).
 */
export async function rebuildInitramfs(host: RemoteHost, system?: System, release?: string): Promise<void> {
  const facts = system && release ? undefined : await readInitramfsFacts(host);
  const chosen = system ?? facts?.systems[0];
  const kernel = release ?? facts!.kernel.release;
  if (!chosen) return;
  console.error(`${host.label}: rebuilding the initramfs of ${kernel}`);
  await host.run(systems[chosen].rebuild(kernel), { timeoutMs: 30 * 60_000 });
}

export interface InitramfsModulesArgs {
  connection: pulumi.Input<ConnectionInput>;
  system?: pulumi.Input<"auto" | "initramfs-tools" | "mkinitfs">;
  triggers?: pulumi.Input<unknown[]>;
  trial?: pulumi.Input<boolean>;
  rebuildOnDelete?: pulumi.Input<boolean>;
}

export class InitramfsModules extends HostResource {
  declare readonly state: pulumi.Output<InitramfsState>;

  constructor(name: string, args: InitramfsModulesArgs, opts?: pulumi.CustomResourceOptions) {
    super("InitramfsModules", name, args, opts);
  }
}
