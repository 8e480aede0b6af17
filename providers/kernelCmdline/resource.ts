// KernelCmdline: the kernel arguments this resource owns, in the bootloader's config (GRUB's
// /etc/default/grub or Alpine's /etc/update-extlinux.conf), then the generated boot config
// regenerated and checked. Only the arguments it owns are added, replaced or removed.
import * as pulumi from "@pulumi/pulumi";
import { prefetchBootReads, registerBootReads } from "../bootReads";
import { readStaging, stagedFile, Staging } from "../bootTrial/host";
import { StagedFile } from "../bootTrial/plan";
import { failpoint } from "../failpoint";
import { readBackupTexts } from "../hostFile";
import { HostResource, hostResourceProvider, InputError } from "../hostResource";
import { ConnectionInput } from "../ssh/connection";
import { RemoteHost } from "../ssh/host";
import { catFile, fileFromSection, readSections } from "../ssh/sections";
import { ShellListOwnership } from "../text/shellVariable";
import { Backend, backends, regenerate, regenerateAndVerify } from "./bootConfig";
import { EXTLINUX_CONF_PATH, ExtlinuxOwnership, extlinuxCfgHasArgs, planUpdateExtlinuxConf, revertUpdateExtlinuxConf, UPDATE_EXTLINUX_CONF_PATH } from "./extlinux";
import { GRUB_CFG_PATH, GRUB_DEFAULTS_PATH, grubCfgHasArgs, planGrubDefaults, revertGrubDefaults } from "./grub";
import { KernelCmdlineInputs, resolveBootBackend } from "./schema";

interface BootFacts {
  defaults?: string;
  extlinuxDefaults?: string;
  grubCfg?: string;
  extlinuxCfg?: string;
  dropIns: { path: string; text: string }[];
  /** Read only without state: the source files as vfio-host saved them before its first edit ("" when they did not exist). */
  backups?: { grub?: string; extlinux?: string };
}

export interface KernelCmdlineState {
  backend: Backend;
  /** grub: ShellListOwnership; extlinux: ExtlinuxOwnership. */
  owned: ShellListOwnership | ExtlinuxOwnership;
  /** Staged for a trial boot instead of written (HostReboot writes it once the trial passed). */
  staged?: StagedFile[];
}

interface KernelCmdlinePlan {
  backend: Backend;
  path: string;
  before: string;
  after: string;
  owned: KernelCmdlineState["owned"];
  changes: readonly string[];
  warnings: readonly string[];
  /** The generated boot config lacks the arguments even if the source file is right. */
  stale: boolean;
  staging: Staging;
}

async function readBootFacts(host: RemoteHost): Promise<BootFacts> {
  const s = await readSections(host, {
    defaults: catFile(GRUB_DEFAULTS_PATH),
    extlinuxDefaults: catFile(UPDATE_EXTLINUX_CONF_PATH),
    grubCfg: catFile(GRUB_CFG_PATH),
    extlinuxCfg: catFile(EXTLINUX_CONF_PATH),
    // NUL-separated path/content pairs: drop-in names are the host's, not ours to frame.
    dropIns: `for f in /etc/default/grub.d/*.cfg; do [ -f "$f" ] && printf '%s\\0' "$f" && cat "$f" && printf '\\0'; done`,
  });
  const parts = s.dropIns.split("\0");
  const dropIns = [];
  for (let i = 0; i + 1 < parts.length; i += 2) dropIns.push({ path: parts[i], text: parts[i + 1] });
  return {
    defaults: fileFromSection(s.defaults),
    extlinuxDefaults: fileFromSection(s.extlinuxDefaults),
    grubCfg: fileFromSection(s.grubCfg),
    extlinuxCfg: fileFromSection(s.extlinuxCfg),
    dropIns,
  };
}

/** Our backups of both source files, to recognise our own args after a run that died before recording its state. */
async function readBackups(host: RemoteHost): Promise<BootFacts["backups"]> {
  const [grub, extlinux] = await readBackupTexts(host, [GRUB_DEFAULTS_PATH, UPDATE_EXTLINUX_CONF_PATH]);
  return { grub, extlinux };
}

/** Pure: what to write, given the host's files and what the last apply owned. */
export function planKernelCmdline(
  inputs: KernelCmdlineInputs,
  facts: BootFacts,
  state: KernelCmdlineState | undefined,
  staging: Staging = { stage: false },
): KernelCmdlinePlan {
  let backend: Backend;
  try {
    backend = resolveBootBackend(inputs, {
      hasDefaultGrub: facts.defaults !== undefined,
      hasUpdateExtlinuxConf: facts.extlinuxDefaults !== undefined,
    });
  } catch (err) {
    throw new InputError("backend", (err as Error).message);
  }
  const previous = state?.backend === backend ? state.owned : undefined;
  const request = { ensure: inputs.args, remove: inputs.remove };
  if (backend === "grub") {
    const before = facts.defaults ?? "";
    const plan = planGrubDefaults({ ...request, text: before, dropIns: facts.dropIns, previouslyOwned: previous as ShellListOwnership, backup: facts.backups?.grub });
    const stale = !grubCfgHasArgs(facts.grubCfg ?? "", inputs.args).ok;
    return { backend, path: GRUB_DEFAULTS_PATH, before, after: plan.text, owned: plan.owned, changes: plan.changes, warnings: plan.warnings, stale, staging };
  }
  const before = facts.extlinuxDefaults ?? "";
  const plan = planUpdateExtlinuxConf({
    ...request,
    text: before,
    modules: inputs.modules,
    previouslyOwned: previous as ExtlinuxOwnership,
    backup: facts.backups?.extlinux,
  });
  const stale = !extlinuxCfgHasArgs(facts.extlinuxCfg ?? "", inputs.args, inputs.modules).ok;
  // Trial boots are GRUB's (its one-shot); extlinux changes are written as they always were.
  return { backend, path: UPDATE_EXTLINUX_CONF_PATH, before, after: plan.text, owned: plan.owned, changes: plan.changes, warnings: [], stale, staging: { stage: false } };
}

export function describeKernelCmdlinePlan(plan: KernelCmdlinePlan): string[] {
  const changed = plan.after !== plan.before;
  if (!changed && !plan.stale) return [];
  return [
    ...plan.changes.map((c) => `${plan.path}: ${c}`),
    `regenerate ${backends[plan.backend].generated} (${backends[plan.backend].regenerateName})`,
    ...(plan.staging.line ? [plan.staging.line] : []),
  ];
}

/**
 * After a failed regeneration or check, the source file this run edited gets its bytes from before
 * the run back and the boot config is regenerated from them once more, so the next boot uses the
 * config it used before rather than a half-applied one. Says what happened, for the error.
 */
async function putBack(host: RemoteHost, plan: KernelCmdlinePlan): Promise<string> {
  const b = backends[plan.backend];
  try {
    await host.writeFileAtomic(plan.path, plan.before);
  } catch (err) {
    return (
      `putting ${plan.path} back failed too (${(err as Error).message}): it still holds this run's edit, which ` +
      `${b.generated} may or may not reflect; check both and run ${b.regenerateName} by hand before rebooting`
    );
  }
  try {
    await regenerate(host, plan.backend);
  } catch (err) {
    return (
      `${plan.path} was put back, but running ${b.regenerateName} again failed too (${(err as Error).message}), so ` +
      `${b.generated} may not match it; fix the cause and run ${b.regenerateName} by hand before rebooting`
    );
  }
  return `${plan.path} was put back and ${b.generated} regenerated from it`;
}

/** The plan's reads, at once; without state the backups too, to recognise what a run that died wrote. */
const readKernelCmdlineFacts = (host: RemoteHost, trial: boolean, withBackups: boolean) =>
  Promise.all([readBootFacts(host), withBackups ? readBackups(host) : undefined, readStaging(host, trial)]);
registerBootReads((host, trial) => readKernelCmdlineFacts(host, trial, true));

export const kernelCmdlineProvider = hostResourceProvider<KernelCmdlineInputs, KernelCmdlinePlan, KernelCmdlineState>({
  schema: KernelCmdlineInputs,
  identity: () => "kernel-cmdline",
  prefetch: prefetchBootReads,
  plan: async (host, inputs, state) => {
    const [facts, backups, staging] = await readKernelCmdlineFacts(host, inputs.trial, state === undefined);
    return planKernelCmdline(inputs, { ...facts, backups }, state, staging);
  },
  describe: describeKernelCmdlinePlan,
  warnings: (plan) => [...plan.warnings],

  async apply(host, plan, inputs) {
    const changed = plan.after !== plan.before;
    if (plan.staging.stage) {
      // GRUB's source file exists (the backend refuses a host without it), so an empty one is staged as such.
      const staged = changed || plan.stale ? [stagedFile(plan.path, plan.before, plan.after)] : [];
      return { backend: plan.backend, owned: plan.owned, staged };
    }
    if (changed) {
      await host.backupOnce(plan.path);
      await host.writeFileAtomic(plan.path, plan.after);
    }
    if (changed || plan.stale) {
      await failpoint("kernelCmdline.regenerate");
      const failure = await regenerateAndVerify(host, plan.backend, (g) => backends[plan.backend].verify(g, inputs));
      // Leave the host as it was rather than half-configured.
      if (failure !== undefined) throw new Error(changed ? `${failure}; ${await putBack(host, plan)}` : failure);
    }
    return { backend: plan.backend, owned: plan.owned };
  },

  async revert(host, _inputs, state) {
    const { source } = backends[state.backend];
    const current = (await host.readFile(source))?.toString("utf8");
    if (current === undefined) return;
    const reverted =
      state.backend === "grub"
        ? revertGrubDefaults(current, state.owned as ShellListOwnership)
        : revertUpdateExtlinuxConf(current, state.owned as ExtlinuxOwnership);
    await host.revertFile(source, reverted);
    await regenerate(host, state.backend);
  },
});

export interface KernelCmdlineArgs {
  connection: pulumi.Input<ConnectionInput>;
  /** Arguments this resource owns, e.g. ["intel_iommu=on", "iommu=pt"]. */
  args: pulumi.Input<pulumi.Input<string>[]>;
  /** Keys (or exact key=value) to take off the line, e.g. ["nomodeset"]. */
  remove?: pulumi.Input<pulumi.Input<string>[]>;
  backend?: pulumi.Input<"auto" | "grub" | "extlinux">;
  /** extlinux only: appended to `modules=`, e.g. ["vfio", "vfio-pci", "vfio_iommu_type1"]. */
  modules?: pulumi.Input<pulumi.Input<string>[]>;
  /** Boot-critical keys (root, init, rd.*, ...) that args may set or remove take off, e.g. ["root"]. */
  acknowledgeBootCritical?: pulumi.Input<pulumi.Input<string>[]>;
  /** Stage changes for HostReboot's trial boot instead of writing them (GRUB only). */
  trial?: pulumi.Input<boolean>;
}

export class KernelCmdline extends HostResource {
  declare readonly args: pulumi.Output<string[]>;
  declare readonly state: pulumi.Output<KernelCmdlineState>;

  constructor(name: string, args: KernelCmdlineArgs, opts?: pulumi.CustomResourceOptions) {
    super("KernelCmdline", name, args, opts);
  }
}
