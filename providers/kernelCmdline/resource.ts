// KernelCmdline: the kernel arguments this resource owns, in the files of the boot backend that
// boots the host (bootConfig.ts: GRUB, Alpine's extlinux, systemd-boot, proxmox-boot-tool,
// syslinux), then what the loader reads regenerated (where a tool writes it) and checked. Only the
// arguments it owns are added, replaced or removed; the CPU and firmware preflight comes first.
import * as pulumi from "@pulumi/pulumi";
import { prefetchBootReads, registerBootReads } from "../bootReads";
import { readStaging, stagedFile, Staging, stagingFor } from "../bootTrial/host";
import { StagedFile } from "../bootTrial/plan";
import { failpoint } from "../failpoint";
import { readBackupTexts } from "../hostFile";
import { HostResource, hostResourceProvider, InputError } from "../hostResource";
import { NEXT_KERNEL } from "../kernel/nextKernel";
import { iommuPreflight, parsePreflightSections, PREFLIGHT_SECTIONS, PreflightFacts } from "../kernel/preflight";
import { ConnectionInput } from "../ssh/connection";
import { RemoteHost } from "../ssh/host";
import { readSections } from "../ssh/sections";
import { Backend, backends, BootFiles, readBootFiles, regenerate, regenerateAndVerify, SourceEdit } from "./bootConfig";
import { BootBackend, KernelCmdlineInputs, ResolvedBackend, resolveBootBackend } from "./schema";

interface BootFacts extends BootFiles {
  /** What the CPU and the firmware allow (undefined in facts from before it was read). */
  preflight?: PreflightFacts;
  /** Read only without state: the source files as vfio-host saved them before its first edit ("" when they did not exist). */
  backups?: Record<string, string | undefined>;
}

export interface KernelCmdlineState {
  backend: Backend;
  /** The backend's own record of what it changed (grub: ShellListOwnership; extlinux: ExtlinuxOwnership; see bootConfig.ts). */
  owned: unknown;
  /** Staged for a trial boot instead of written (HostReboot writes it once the trial passed). */
  staged?: StagedFile[];
}

interface KernelCmdlinePlan {
  backend: Backend;
  /** Why this backend: set, or what auto found (the files, the loader that booted the host). */
  why: string;
  /** The preflight's notes on the CPU and the firmware. */
  notes: readonly string[];
  /** Every source file of the backend, changed or not. */
  edits: readonly SourceEdit[];
  owned: unknown;
  changes: readonly string[];
  warnings: readonly string[];
  /** What the loader reads lacks the arguments even if the source files are right. */
  stale: boolean;
  staging: Staging;
}

const changedEdits = (plan: Pick<KernelCmdlinePlan, "edits">) => plan.edits.filter((e) => e.after !== e.before);

/** Our backups of the source files every backend could edit here, to recognise our own args after a run that died before recording its state. */
async function readBackups(host: RemoteHost, files: BootFiles): Promise<Record<string, string | undefined>> {
  const paths = [...new Set(Object.values(backends).flatMap((b) => (b.present(files) ? b.sources(files) : [])))];
  const texts = await readBackupTexts(host, paths);
  return Object.fromEntries(paths.map((path, i) => [path, texts[i]]));
}

/** Pure: what to write, given the host's files and what the last apply owned. */
export function planKernelCmdline(
  inputs: KernelCmdlineInputs,
  facts: BootFacts,
  state: KernelCmdlineState | undefined,
  staging: Staging = { stage: false },
): KernelCmdlinePlan {
  let resolved: ResolvedBackend;
  try {
    resolved = resolveBootBackend(inputs, facts);
  } catch (err) {
    throw new InputError("backend", (err as Error).message);
  }
  const backend = resolved.backend;
  const preflight = facts.preflight ? iommuPreflight(facts.preflight, { args: inputs.args }) : { refusals: [], notes: [] };
  if (preflight.refusals.length > 0) throw new InputError("args", preflight.refusals.join("; "));
  const b = backends[backend];
  const plan = b.plan(
    { ensure: inputs.args, remove: inputs.remove, modules: inputs.modules, previouslyOwned: state && state.backend === backend ? state.owned : undefined, backups: facts.backups },
    facts,
  );
  const stale = !b.verify(facts, inputs.args, inputs.modules).ok;
  // Trial boots need the loader's one-shot (GRUB's, systemd-boot's); other backends' changes are written as they always were.
  return { backend, why: resolved.why, notes: preflight.notes, ...plan, stale, staging: stagingFor(staging, b.trial) };
}

export function describeKernelCmdlinePlan(plan: KernelCmdlinePlan): string[] {
  const edited = changedEdits(plan);
  if (edited.length === 0 && !plan.stale) return [];
  const b = backends[plan.backend];
  // Which backend and why, and the preflight's notes, lead the list; a no-op run stays quiet.
  return [
    `backend ${plan.backend} (${plan.why})`,
    ...plan.notes.map((n) => `note: ${n}`),
    ...plan.changes,
    ...(b.regenerate ? [`regenerate ${b.generated} (${b.regenerate.name})`] : []),
    ...(plan.staging.line ? [plan.staging.line] : []),
  ];
}

/**
 * After a failed regeneration or check, the source files this run edited get their bytes from
 * before the run back and the boot config is regenerated from them once more, so the next boot
 * uses the config it used before rather than a half-applied one. Says what happened, for the error.
 */
async function putBack(host: RemoteHost, plan: KernelCmdlinePlan): Promise<string> {
  const b = backends[plan.backend];
  const edited = changedEdits(plan);
  const paths = edited.map((e) => e.path).join(", ");
  const tool = b.regenerate?.name;
  const [was, it] = edited.length === 1 ? ["was", "it"] : ["were", "them"];
  try {
    // A file this run created goes away again (its backup is the marker that it did not exist): an
    // empty /etc/kernel/cmdline would give kernels installed later no root=.
    for (const edit of edited) {
      if (edit.before === undefined) await host.restoreBackup(edit.path);
      else await host.writeFileAtomic(edit.path, edit.before);
    }
  } catch (err) {
    return (
      `putting ${paths} back failed too (${(err as Error).message}): some still hold this run's edit` +
      (tool ? `, which ${b.generated} may or may not reflect; check them and run ${tool} by hand before rebooting` : "; check them before rebooting")
    );
  }
  if (!tool) return `${paths} ${was} put back`;
  try {
    await regenerate(host, plan.backend);
  } catch (err) {
    return (
      `${paths} ${was} put back, but running ${tool} again failed too (${(err as Error).message}), so ` +
      `${b.generated} may not match ${it}; fix the cause and run ${tool} by hand before rebooting`
    );
  }
  return `${paths} ${was} put back and ${b.generated} regenerated from ${it}`;
}

/** The plan's reads, at once; without state the backups too, to recognise what a run that died wrote. */
const readKernelCmdlineFacts = (host: RemoteHost, trial: boolean, withBackups: boolean) =>
  Promise.all([
    readBootFiles(host).then(async (files) => ({ ...files, backups: withBackups ? await readBackups(host, files) : undefined })),
    readStaging(host, trial),
    // The same snippets as VfioBinding's facts, so one read serves both.
    readSections(host, PREFLIGHT_SECTIONS, { escalate: false, prelude: NEXT_KERNEL }).then(parsePreflightSections),
  ]).then(([files, staging, preflight]) => [{ ...files, preflight }, staging] as const);
registerBootReads((host, trial) => readKernelCmdlineFacts(host, trial, true));

export const kernelCmdlineProvider = hostResourceProvider<KernelCmdlineInputs, KernelCmdlinePlan, KernelCmdlineState>({
  schema: KernelCmdlineInputs,
  identity: () => "kernel-cmdline",
  prefetch: prefetchBootReads,
  plan: async (host, inputs, state) => {
    const [facts, staging] = await readKernelCmdlineFacts(host, inputs.trial, state === undefined);
    return planKernelCmdline(inputs, facts, state, staging);
  },
  describe: describeKernelCmdlinePlan,
  warnings: (plan) => [...plan.warnings],

  async apply(host, plan, inputs) {
    const edited = changedEdits(plan);
    if (plan.staging.stage) {
      // A file that does not exist yet (systemd-boot's /etc/kernel/cmdline) is staged as absent: the commit creates it.
      const staged = edited.length > 0 || plan.stale ? plan.edits.map((e) => stagedFile(e.path, e.before, e.after)) : [];
      return { backend: plan.backend, owned: plan.owned, staged };
    }
    for (const edit of edited) {
      await host.backupOnce(edit.path);
      await host.writeFileAtomic(edit.path, edit.after);
    }
    if (edited.length > 0 || plan.stale) {
      await failpoint("kernelCmdline.regenerate");
      const failure = await regenerateAndVerify(host, plan.backend, (files) => backends[plan.backend].verify(files, inputs.args, inputs.modules));
      // Leave the host as it was rather than half-configured.
      if (failure !== undefined) throw new Error(edited.length > 0 ? `${failure}; ${await putBack(host, plan)}` : failure);
    }
    return { backend: plan.backend, owned: plan.owned };
  },

  async revert(host, _inputs, state) {
    const b = backends[state.backend];
    const current = new Map<string, string | undefined>();
    for (const path of b.revertSources(state.owned)) current.set(path, (await host.readFile(path))?.toString("utf8"));
    const reverted = b.revert((path) => current.get(path), state.owned);
    if (reverted.length === 0) return;
    for (const edit of reverted) {
      if (edit.createdWith && (await host.readBackup(edit.path)) === "absent") await host.restoreBackup(edit.path);
      else await host.revertFile(edit.path, edit.after);
    }
    await regenerate(host, state.backend);
  },
});

export interface KernelCmdlineArgs {
  connection: pulumi.Input<ConnectionInput>;
  /** Arguments this resource owns, e.g. ["intel_iommu=on", "iommu=pt"]. */
  args: pulumi.Input<pulumi.Input<string>[]>;
  /** Keys (or exact key=value) to take off the line, e.g. ["nomodeset"]. */
  remove?: pulumi.Input<pulumi.Input<string>[]>;
  backend?: pulumi.Input<BootBackend>;
  /** extlinux only: appended to `modules=`, e.g. ["vfio", "vfio-pci", "vfio_iommu_type1"]. */
  modules?: pulumi.Input<pulumi.Input<string>[]>;
  /** Boot-critical keys (root, init, rd.*, ...) that args may set or remove take off, e.g. ["root"]. */
  acknowledgeBootCritical?: pulumi.Input<pulumi.Input<string>[]>;
  /** Stage changes for HostReboot's trial boot instead of writing them (GRUB, systemd-boot). */
  trial?: pulumi.Input<boolean>;
}

export class KernelCmdline extends HostResource {
  declare readonly args: pulumi.Output<string[]>;
  declare readonly state: pulumi.Output<KernelCmdlineState>;

  constructor(name: string, args: KernelCmdlineArgs, opts?: pulumi.CustomResourceOptions) {
    super("KernelCmdline", name, args, opts);
  }
}
