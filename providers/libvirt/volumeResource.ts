// Volume: a disk image imported into a dir pool from a URL or a host path (decompressed on the
// host, SHA-256 checked, inspected with qemu-img before it takes its name), then the pool rescanned.
// A file already there is used as it is; it is replaced only when this stack imported it and the
// declared image changed, and then only after the new one is staged and checked, with the old one
// kept beside it, and never under a libvirt domain unless allowReplaceInUse. Delete removes only a
// file this resource imported, and refuses while a domain still has it as a disk.
import * as pulumi from "@pulumi/pulumi";
import { HostResource, hostResourceProvider, InputError, type PreviousInputs } from "../hostResource";
import { runSteps } from "../hostStep";
import { ConnectionInput } from "../ssh/connection";
import type { RemoteHost } from "../ssh/host";
import { readSections } from "../ssh/sections";
import { namedBefore, readPools } from "./libvirtResource";
import type { ExistingPool } from "./pool";
import {
  checkDeleteInUse,
  checkReplaceInUse,
  checkStagedImage,
  importedFromSchema,
  parseDomainsSection,
  parseQemuImgInfo,
  planVolumeDelete,
  planVolumeImport,
  reimportReasons,
  VOLUME_FIELD_RULES,
  volumeOutputs,
  volumePath,
  volumeSchema,
  type HostDomains,
  type ImageInfo,
  type ImportedFrom,
  type VolumeImportPlan,
  type VolumeInputs,
  type VolumeOutputs,
  type VolumeSpec,
} from "./volume";
import { virshSh } from "./virsh";

export interface VolumeState extends VolumeOutputs {
  /** This resource put the file there, so delete may remove it and a changed source may replace it. */
  readonly imported: boolean;
}

type VolumePlan =
  | { readonly kind: "pending"; readonly problem: string; readonly change: string }
  | { readonly kind: "import"; readonly steps: VolumeImportPlan; readonly reasons: readonly string[] }
  | { readonly kind: "present"; readonly state: VolumeState; readonly warning?: string };

interface VolumeFacts {
  readonly pool?: ExistingPool;
  readonly exists: boolean;
  /** qemu-img info of the file when it exists. */
  readonly info?: ImageInfo;
  readonly domains: HostDomains;
}

// Every defined domain's live and inactive XML, to find the guests that have the file as a disk.
// virsh missing means libvirt is not installed, so no domain can use the file; virsh failing
// (libvirtd down, no access) means nobody can tell, which the checks treat as "in use".
const DOMAINS_SNIPPET = `command -v virsh >/dev/null 2>&1 || { echo absent; exit 0; }
list=$(${virshSh("list")} --all --name 2>&1) || { printf 'failed %s\\n' "$list"; exit 0; }
echo listed
printf '%s\\n' "$list" | while read -r d; do [ -n "$d" ] || continue
printf '\\0%s\\0' "$d"; ${virshSh("dumpxml")} --domain "$d" </dev/null; printf '\\0'; ${virshSh("dumpxml")} --inactive --domain "$d" </dev/null; done`;

async function readVolumeFacts(host: RemoteHost, spec: VolumeSpec): Promise<VolumeFacts> {
  const pool = (await readPools(host)).find((p) => p.name === spec.pool);
  if (!pool) return { exists: false, domains: { readable: true, domains: [] } };
  const path = volumePath(spec, { pool, exists: false });
  const s = await readSections(
    host,
    // -U: the image may be open in a running guest.
    { exists: '[ -e "$1" ] && echo yes', info: 'qemu-img info -U --output=json -- "$1"', domains: DOMAINS_SNIPPET },
    { args: [path] },
  );
  const exists = s.exists.trim() === "yes";
  return { pool, exists, info: exists ? parseQemuImgInfo(s.info) : undefined, domains: parseDomainsSection(s.domains) };
}

/**
 * What was declared for this file before, when this stack imported it: from the previous inputs (in
 * check, where the state is not available, a volume of this pool and name in the stack is taken
 * to be one it imported; a file found on the host is then only known in update, which leaves it).
 */
function importedBefore(spec: VolumeSpec, state: VolumeState | undefined, previous: PreviousInputs | undefined): ImportedFrom | undefined {
  if (state && !state.imported) return undefined;
  const parsed = importedFromSchema.safeParse(previous ?? {});
  if (!parsed.success || parsed.data.pool !== spec.pool || parsed.data.name !== spec.name) return undefined;
  return parsed.data;
}

const describeSource = (spec: VolumeSpec) => ("url" in spec.source ? spec.source.url : spec.source.hostPath);

const replaceOnChange = (Object.keys(VOLUME_FIELD_RULES) as (keyof VolumeSpec)[]).filter((k) => VOLUME_FIELD_RULES[k].replaces);

export const volumeProvider = hostResourceProvider<VolumeSpec, VolumePlan, VolumeState>({
  schema: volumeSchema,
  identity: (spec) => `volume/${spec.pool}/${spec.name}`,
  replaceOnChange,
  async plan(host, spec, state, previousInputs) {
    const facts = await readVolumeFacts(host, spec);
    if (!facts.pool) {
      // At preview the pool may be one this update creates first; create fails with this problem.
      try {
        planVolumeImport(spec, facts);
      } catch (err) {
        const change = `import ${describeSource(spec)} as ${spec.pool}/${spec.name} once its StoragePool has created pool ${spec.pool}`;
        return { kind: "pending", problem: (err as Error).message, change };
      }
    }
    const previous = importedBefore(spec, state, previousInputs);
    const steps = planVolumeImport(spec, facts, previous);
    if (steps) {
      const reasons = steps.previousPath ? reimportReasons(previous!, spec) : [];
      const problem = steps.previousPath && checkReplaceInUse(spec, facts, reasons, facts.domains);
      if (problem) throw new InputError(reasons[0].split(" ")[0], problem);
      return { kind: "import", steps, reasons };
    }
    const problem = checkStagedImage(spec, facts.info!);
    if (problem) throw new InputError("format", problem.replace("the image", `${volumePath(spec, facts)}, which is already on the host,`));
    const ours = state?.imported ?? namedBefore(previousInputs, spec.name);
    const outputs = volumeOutputs(volumePath(spec, facts), facts.info!);
    return {
      kind: "present",
      state: { ...outputs, imported: state?.imported ?? false },
      warning: ours ? undefined : `${outputs.path} is already on the host: it is used as it is (not imported again) and left in place on delete`,
    };
  },
  describe(plan) {
    if (plan.kind === "import") {
      const replace = plan.steps.previousPath ? [`replace the image at ${plan.steps.path} (${plan.reasons.join(", ")})`] : [];
      return [...replace, ...[...plan.steps.stage, plan.steps.inspect, ...plan.steps.commit].map((s) => s.describe)];
    }
    if (plan.kind === "pending") return [plan.change];
    return [];
  },
  warnings: (plan) => (plan.kind === "present" && plan.warning ? [plan.warning] : []),
  async apply(host, plan, spec) {
    if (plan.kind === "pending") throw new Error(plan.problem);
    if (plan.kind === "present") return plan.state;
    const steps = plan.steps;
    let info: ImageInfo;
    try {
      await runSteps(host, steps.stage);
      info = parseQemuImgInfo((await host.run(steps.inspect.argv)).stdout);
      const problem = checkStagedImage(spec, info);
      if (problem) throw new Error(problem);
    } catch (err) {
      await host.exec(steps.discard.argv);
      throw err;
    }
    await runSteps(host, steps.commit);
    return { ...volumeOutputs(steps.path, info), imported: true };
  },
  async revert(host, spec, state) {
    if (!state.imported) {
      console.error(`${host.label}: ${state.path} was on the host before this Volume; it stays`);
      return;
    }
    const facts = await readVolumeFacts(host, spec);
    const problem = facts.exists ? checkDeleteInUse(spec, facts, facts.domains) : undefined;
    if (problem) throw new Error(problem);
    await runSteps(host, planVolumeDelete(spec, facts));
  },
});

export type VolumeArgs = { [K in keyof VolumeInputs]: pulumi.Input<VolumeInputs[K]> } & { connection: pulumi.Input<ConnectionInput> };

export class Volume extends HostResource {
  declare readonly name: pulumi.Output<string>;
  declare readonly pool: pulumi.Output<string>;
  /** Checked against the image: "qcow2" or "raw". */
  declare readonly format: pulumi.Output<string>;
  declare readonly state: pulumi.Output<VolumeState>;
  /** The image file on the host and the disk size the guest sees. */
  readonly path: pulumi.Output<string>;
  readonly virtualSizeBytes: pulumi.Output<number>;

  constructor(name: string, args: VolumeArgs, opts?: pulumi.CustomResourceOptions) {
    super("Volume", name, args, opts);
    this.path = this.state.apply((s) => s.path);
    this.virtualSizeBytes = this.state.apply((s) => s.virtualSizeBytes);
  }
}
