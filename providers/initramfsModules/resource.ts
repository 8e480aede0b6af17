// InitramfsModules: the VFIO modules (and /etc/modprobe.d, which both initramfs builders copy) in
// the early initramfs of the kernel that boots next, so vfio-pci can claim devices before their
// host drivers. Debian/Ubuntu: /etc/initramfs-tools/modules + update-initramfs; Alpine:
// features.d/vfio.modules listed in mkinitfs.conf features= + mkinitfs.
import * as pulumi from "@pulumi/pulumi";
import { isDeepStrictEqual } from "util";
import { z } from "zod";
import { prefetchBootReads, registerBootReads } from "../bootReads";
import { readStaging, stagedFile, Staging, stagingFor } from "../bootTrial/host";
import { StagedFile } from "../bootTrial/plan";
import { failpoint } from "../failpoint";
import { Backup } from "../hostFile";
import { HostResource, hostResourceProvider, InputError } from "../hostResource";
import { KernelModules, missingFromInitramfs, moduleListForKernel, VfioModule } from "../kernel/modules";
import { KERNEL_SECTIONS, NEXT_KERNEL, parseNextKernel } from "../kernel/nextKernel";
import { ConnectionInput } from "../ssh/connection";
import { RemoteHost } from "../ssh/host";
import { catFile, fileFromSection, readSections } from "../ssh/sections";
import { FileChange, System, SYSTEM_NAMES, SystemPlan, systems } from "./systems";

export const InitramfsModulesInputs = z.strictObject({
  system: z.enum(["auto", ...SYSTEM_NAMES]).default("auto"),
  /** Whatever else must be in the image, e.g. VfioBinding's modprobe.d content: a change rebuilds it. */
  triggers: z.array(z.unknown()).default([]),
  /** The stack boots changes once as a trial first: stage them for HostReboot instead of writing them (initramfs-tools on GRUB, dracut on systemd-boot). */
  trial: z.boolean().default(false),
  /**
   * Rebuild the image when this resource is deleted. VfioHost turns it off: its VfioBinding is
   * deleted right after this resource and rebuilds the image then, so one rebuild is enough.
   */
  rebuildOnDelete: z.boolean().default(true),
});
type Inputs = z.output<typeof InitramfsModulesInputs>;

export interface InitramfsState {
  system: System;
  release: string;
  /** The system's own record of what it changed (initramfs-tools: TokenOwnership; mkinitfs: ShellListOwnership). */
  owned: unknown;
  triggers: unknown[];
  /** mkinitfs: what this stack last wrote to the features.d file (absent in state recorded before it was kept). */
  featureSha256?: string;
  /** Staged for a trial boot instead of written and rebuilt (HostReboot builds the trial's image). */
  staged?: StagedFile[];
  stagedRebuild?: boolean;
}

interface InitramfsPlan {
  system: System;
  kernel: KernelModules;
  modules: VfioModule[];
  /** The files that change. */
  files: FileChange[];
  owned: unknown;
  changes: string[];
  /** Why the image must be rebuilt, or undefined. */
  rebuild?: string;
  /** The commands that rebuild it. */
  commands: string[][];
  /** The modules the live image lacks. */
  missing: string[];
  featureSha256?: string;
  /** Planned without state: why creating the resource must not write (see staleBackupRefusal). */
  refusal?: string;
  staging: Staging;
}

const allSources = [...new Set(Object.values(systems).flatMap((s) => s.sources))];

async function readInitramfsFacts(host: RemoteHost) {
  // Section names are shell words: files and listings go by their index.
  const files = Object.fromEntries(allSources.map((path, i) => [`file${i}`, catFile(path)]));
  const listings = Object.fromEntries(SYSTEM_NAMES.map((name, i) => [`listing${i}`, systems[name].listing]));
  const boots = Object.fromEntries(SYSTEM_NAMES.map((name, i) => [`boot${i}`, systems[name].bootSection ?? ":"]));
  const s: Record<string, string> = await readSections(host, {
    ...KERNEL_SECTIONS,
    system: SYSTEM_NAMES.map((name) => `command -v ${systems[name].command} >/dev/null && echo ${name}`).join("; "),
    ...files,
    ...listings,
    ...boots,
  }, { prelude: NEXT_KERNEL });
  return {
    kernel: parseNextKernel(s as Record<keyof typeof KERNEL_SECTIONS, string>),
    systems: s.system.split("\n").filter(Boolean) as System[],
    files: Object.fromEntries(allSources.map((path, i) => [path, fileFromSection(s[`file${i}`])])) as Record<string, string | undefined>,
    listing: Object.fromEntries(SYSTEM_NAMES.map((name, i) => [name, s[`listing${i}`]])) as Partial<Record<System, string>>,
    boot: Object.fromEntries(SYSTEM_NAMES.map((name, i) => [name, s[`boot${i}`]])) as Partial<Record<System, string>>,
  };
}
/** Read only without state: vfio-host's backups of the files, to recognise what a run that died before recording its state wrote. */
async function readInitramfsBackups(host: RemoteHost): Promise<Record<string, Backup>> {
  const backups = await Promise.all(allSources.map((path) => host.readBackup(path)));
  return Object.fromEntries(allSources.map((path, i) => [path, backups[i]]));
}
/** The plan's reads, at once; without state the backups too. */
const readInitramfsPlanFacts = (host: RemoteHost, trial: boolean, withBackups: boolean) =>
  Promise.all([readInitramfsFacts(host), withBackups ? readInitramfsBackups(host) : undefined, readStaging(host, trial)]);
registerBootReads((host, trial) => readInitramfsPlanFacts(host, trial, true));

type InitramfsFacts = Omit<Awaited<ReturnType<typeof readInitramfsFacts>>, "boot"> & {
  /** Each system's bootSection output (where the image is, which tools there are); none for builders without one. */
  boot?: Partial<Record<System, string>>;
  backups?: Record<string, Backup>;
};

/** Pure: which files change and whether the image must be rebuilt. */
export function planInitramfs(inputs: Inputs, facts: InitramfsFacts, state: InitramfsState | undefined, staging: Staging = { stage: false }): InitramfsPlan {
  const system = inputs.system !== "auto" ? inputs.system : facts.systems[0];
  if (!system || !facts.systems.includes(system)) {
    throw new InputError(
      "system",
      inputs.system === "auto"
        ? `the host has none of ${SYSTEM_NAMES.map((name) => `${systems[name].command} (${systems[name].install})`).join(", ")}`
        : `system: "${inputs.system}" but the host has no ${systems[inputs.system].command} (${systems[inputs.system].install})`,
    );
  }
  const builder = systems[system];
  const modules = moduleListForKernel(facts.kernel);
  let planned: SystemPlan;
  try {
    planned = builder.plan({ modules, files: facts.files, previouslyOwned: state?.system === system ? state.owned : undefined, backups: facts.backups, boot: facts.boot?.[system] });
  } catch (err) {
    throw new InputError("system", (err as Error).message);
  }
  const written = planned.files.filter((f) => f.before !== f.after);
  const missing = missingFromInitramfs(facts.listing[system] ?? "", modules);
  const rebuild =
    written.length > 0
      ? "its configuration changed"
      : missing.length > 0
        ? `the image lacks ${missing.join(", ")}`
        : state && !isDeepStrictEqual(state.triggers, inputs.triggers)
          ? "its triggers changed"
          : undefined;
  // Trial boots build initramfs-tools images on GRUB, dracut images on systemd-boot; other builders' changes are written as they always were.
  const staged = stagingFor(staging, builder.trial);
  const commands = builder.rebuild(facts.kernel.release, facts.boot?.[system] ?? "");
  const all = [...planned.changes, ...(rebuild ? [`rebuild the initramfs of ${facts.kernel.release} (${describeCommands(commands)}): ${rebuild}`] : [])];
  return {
    system,
    kernel: facts.kernel,
    modules,
    files: written,
    owned: planned.owned,
    changes: all.length > 0 && staged.line ? [...all, staged.line] : all,
    rebuild,
    commands,
    missing,
    featureSha256: planned.wholeFileSha256,
    refusal: planned.refusal,
    staging: staged,
  };
}

const describeCommands = (commands: readonly (readonly string[])[]) => commands.map((argv) => argv.join(" ")).join(" && ");

async function runRebuild(host: RemoteHost, release: string, commands: readonly (readonly string[])[]) {
  console.error(`${host.label}: rebuilding the initramfs of ${release} (this takes a while)`);
  for (const argv of commands) await host.run(argv, { timeoutMs: 30 * 60_000 });
}

async function rebuildAndVerify(host: RemoteHost, plan: InitramfsPlan) {
  const release = plan.kernel.release;
  await failpoint("initramfs.rebuild");
  await runRebuild(host, release, plan.commands);
  const listing = await readSections(host, { listing: `release=$1; ${systems[plan.system].listing}` }, { args: [release] });
  const missing = missingFromInitramfs(listing.listing, plan.modules);
  if (missing.length > 0) {
    throw new Error(`the rebuilt initramfs of ${release} still lacks ${missing.join(", ")}; see ${describeCommands(plan.commands)}`);
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
    if (plan.rebuild) await rebuildAndVerify(host, plan);
    return recorded;
  },
  async revert(host, inputs, state) {
    const builder = systems[state.system];
    const current = new Map<string, string | undefined>();
    for (const path of builder.sources) current.set(path, (await host.readFile(path))?.toString("utf8"));
    await builder.revert(host, { release: state.release, owned: state.owned, wholeFileSha256: state.featureSha256 }, (path) => current.get(path), () => wholeFileShaNow(host, state.system));
    if (inputs.rebuildOnDelete) await rebuildInitramfs(host, state.system, state.release);
  },
});

/**
 * For state recorded before the hash was kept: the whole file as this resource would write it
 * now. A kernel whose modules moved since (or that has none) gives no match, and the file is then
 * kept, with the message that says how to put the original back, rather than lost.
 */
async function wholeFileShaNow(host: RemoteHost, system: System): Promise<string> {
  try {
    const facts = await readInitramfsFacts(host);
    return systems[system].plan({ modules: moduleListForKernel(facts.kernel), files: facts.files }).wholeFileSha256 ?? "unknown";
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
  const facts = await readInitramfsFacts(host);
  const chosen = system ?? facts.systems[0];
  if (!chosen) return;
  // The next kernel's boot section; another release (a state recorded before a kernel update) is rebuilt where its tool puts it by default.
  const kernel = release ?? facts.kernel.release;
  await runRebuild(host, kernel, systems[chosen].rebuild(kernel, kernel === facts.kernel.release ? (facts.boot[chosen] ?? "") : ""));
}

export interface InitramfsModulesArgs {
  connection: pulumi.Input<ConnectionInput>;
  system?: pulumi.Input<"auto" | System>;
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
