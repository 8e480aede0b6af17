// Volume: a disk image imported into a dir pool from a URL or a host path (decompressed on the
// host, SHA-256 checked, inspected with qemu-img before it takes its name), then the pool rescanned.
// A file already there is used as it is; it is replaced only when this stack imported it and the
// declared image changed, and then only after the new one is staged and checked, with the old one
// kept beside it, and never under a libvirt domain unless allowReplaceInUse. A file left by an
// import killed before Pulumi recorded it is the stack's own by its record (importRecorded). An
// import whose pool or tools (curl, xz, gzip) the host lacks waits for them in preview, since the
// stack's StoragePool and HostPackages come first, and fails at apply before any step if they are
// still missing. Delete
// removes only a file this resource imported, and refuses while a domain still has it as a disk.
import * as pulumi from "@pulumi/pulumi";
import { HostResource, hostResourceProvider, InputError, type PreviousInputs, type StackOnHost } from "../hostResource";
import { runSteps } from "../hostStep";
import { ConnectionInput } from "../ssh/connection";
import type { RemoteHost } from "../ssh/host";
import { readSections } from "../ssh/sections";
import { namedBefore, parsePoolsSection, POOLS_SNIPPET } from "./libvirtResource";
import type { ExistingPool } from "./pool";
import {
  checkDeleteInUse,
  checkReplaceInUse,
  checkStagedImage,
  IMAGE_IDENTITY_FORMAT,
  importBlockers,
  importedFromSchema,
  importRecorded,
  importTools,
  parseDomainsSection,
  parseQemuImgInfo,
  planVolumeDelete,
  planVolumeImport,
  reimportReasons,
  VOLUME_FIELD_RULES,
  volumeOutputs,
  volumePath,
  volumeRecord,
  volumeRecordPath,
  volumeSchema,
  type HostDomains,
  type ImageInfo,
  type ImportBlocker,
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

/** An import, unless something this update does first is missing (`blocked`): then apply fails with its problem. */
type VolumePlan =
  | {
      readonly kind: "import";
      readonly steps?: VolumeImportPlan;
      readonly reasons: readonly string[];
      readonly blocked: readonly ImportBlocker[];
      /** Recorded as the importer before the rename (volumeRecord). */
      readonly stack: StackOnHost;
    }
  | { readonly kind: "present"; readonly state: VolumeState; readonly warning?: string };

interface VolumeFacts {
  readonly pool?: ExistingPool;
  /** The commands among importTools that the host has (`command -v`). */
  readonly installed: readonly string[];
  readonly exists: boolean;
  /** qemu-img info of the file when it exists. */
  readonly info?: ImageInfo;
  /** The file's identity (IMAGE_IDENTITY_FORMAT) and its import's record, when they exist. */
  readonly identity?: string;
  readonly record?: string;
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

// "$@" are the commands to look for; those the host has are printed, one a line.
const INSTALLED_SNIPPET = 'for c; do command -v "$c" >/dev/null 2>&1 && echo "$c"; done';

async function readVolumeFacts(host: RemoteHost, spec: VolumeSpec): Promise<VolumeFacts> {
  // With the pools, whose directory the file's facts need first: no round trip of their own.
  const first = await readSections(host, { pools: POOLS_SNIPPET, installed: INSTALLED_SNIPPET }, { args: importTools(spec).map((t) => t.command) });
  const pool = parsePoolsSection(first.pools).find((p) => p.name === spec.pool);
  const installed = first.installed.split("\n").filter((c) => c !== "");
  if (!pool) return { installed, exists: false, domains: { readable: true, domains: [] } };
  const path = volumePath(spec, { pool, exists: false });
  const s = await readSections(
    host,
    {
      exists: '[ -e "$1" ] && echo yes',
      // -U: the image may be open in a running guest.
      info: 'qemu-img info -U --output=json -- "$1"',
      identity: `stat -c '${IMAGE_IDENTITY_FORMAT}' -- "$1"`,
      record: 'cat -- "$2" 2>/dev/null',
      domains: DOMAINS_SNIPPET,
    },
    { args: [path, volumeRecordPath(path)] },
  );
  const exists = s.exists.trim() === "yes";
  return {
    pool,
    installed,
    exists,
    info: exists ? parseQemuImgInfo(s.info) : undefined,
    identity: exists ? s.identity.trim() : undefined,
    record: s.record || undefined,
    domains: parseDomainsSection(s.domains),
  };
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

const replaceOnChange = (Object.keys(VOLUME_FIELD_RULES) as (keyof VolumeSpec)[]).filter((k) => VOLUME_FIELD_RULES[k].replaces);

export const volumeProvider = hostResourceProvider<VolumeSpec, VolumePlan, VolumeState>({
  schema: volumeSchema,
  identity: (spec) => `volume/${spec.pool}/${spec.name}`,
  replaceOnChange,
  async plan(host, spec, state, previousInputs, stack) {
    const facts = await readVolumeFacts(host, spec);
    // At preview the pool and the import's tools may be ones this update brings first (StoragePool, HostPackages).
    if (!facts.pool) return { kind: "import", reasons: [], blocked: importBlockers(spec, facts, facts.installed), stack };
    const previous = importedBefore(spec, state, previousInputs);
    const steps = planVolumeImport(spec, facts, previous);
    if (steps) {
      const reasons = steps.previousPath ? reimportReasons(previous!, spec) : [];
      const problem = steps.previousPath && checkReplaceInUse(spec, facts, reasons, facts.domains);
      if (problem) throw new InputError(reasons[0].split(" ")[0], problem);
      return { kind: "import", steps, reasons, blocked: importBlockers(spec, facts, facts.installed), stack };
    }
    const problem = checkStagedImage(spec, facts.info!);
    if (problem) throw new InputError("format", problem.replace("the image", `${volumePath(spec, facts)}, which is already on the host,`));
    // No state: a create, or an import killed before Pulumi recorded it (its record says so).
    const imported = state?.imported ?? importRecorded(facts.record, facts.identity, stack);
    const ours = imported || namedBefore(previousInputs, spec.name);
    const outputs = volumeOutputs(volumePath(spec, facts), facts.info!);
    return {
      kind: "present",
      state: { ...outputs, imported },
      warning: ours ? undefined : `${outputs.path} is already on the host: it is used as it is (not imported again) and left in place on delete`,
    };
  },
  describe(plan) {
    if (plan.kind === "present") return [];
    const steps = plan.steps;
    const replace = steps?.previousPath ? [`replace the image at ${steps.path} (${plan.reasons.join(", ")})`] : [];
    const run = steps ? [...steps.stage, steps.inspect, ...steps.commit].map((s) => s.describe) : [];
    return [...plan.blocked.map((b) => b.change), ...replace, ...run];
  },
  warnings: (plan) => (plan.kind === "present" && plan.warning ? [plan.warning] : []),
  async apply(host, plan, spec) {
    if (plan.kind === "present") return plan.state;
    const steps = plan.steps;
    // Before any step: a missing tool must not leave a download or a partial image behind.
    if (!steps || plan.blocked.length > 0) throw new Error(plan.blocked.map((b) => b.problem).join("\n"));
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
    if (plan.stack !== undefined) {
      const identity = (await host.run(["stat", "-c", IMAGE_IDENTITY_FORMAT, "--", steps.stagingPath])).stdout.trim();
      await host.writeFileAtomic(volumeRecordPath(steps.path), volumeRecord(plan.stack, identity));
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
