// Volume: a disk image imported into a dir pool from a URL or a host path (decompressed on the
// host, SHA-256 checked, inspected with qemu-img before it takes its name), then the pool rescanned.
// A file already there is used as it is and never overwritten; delete removes only a file this
// resource imported.
import * as pulumi from "@pulumi/pulumi";
import { HostResource, InputError } from "../hostResource";
import { ConnectionInput } from "../ssh/connection";
import type { RemoteHost } from "../ssh/host";
import { readSections } from "../ssh/sections";
import { libvirtObjectProvider, nameInStack, readPools, runSteps } from "./libvirtResource";
import type { ExistingPool } from "./pool";
import {
  checkStagedImage,
  parseQemuImgInfo,
  planVolumeDelete,
  planVolumeImport,
  VOLUME_FIELD_RULES,
  volumeOutputs,
  volumePath,
  volumeSchema,
  type ImageInfo,
  type VolumeImportPlan,
  type VolumeInputs,
  type VolumeOutputs,
  type VolumeSpec,
} from "./volume";

export interface VolumeState extends VolumeOutputs {
  /** This resource put the file there, so delete may remove it. */
  readonly imported: boolean;
}

type VolumePlan =
  | { readonly kind: "pending"; readonly problem: string; readonly change: string }
  | { readonly kind: "import"; readonly steps: VolumeImportPlan }
  | { readonly kind: "present"; readonly state: VolumeState; readonly warning?: string };

interface VolumeFacts {
  readonly pool?: ExistingPool;
  readonly exists: boolean;
  /** qemu-img info of the file when it exists. */
  readonly info?: ImageInfo;
}

async function readVolumeFacts(host: RemoteHost, spec: VolumeSpec): Promise<VolumeFacts> {
  const pool = (await readPools(host)).find((p) => p.name === spec.pool);
  if (!pool) return { exists: false };
  const path = volumePath(spec, { pool, exists: false });
  // -U: the image may be open in a running guest.
  const s = await readSections(host, { exists: '[ -e "$1" ] && echo yes', info: 'qemu-img info -U --output=json -- "$1"' }, { args: [path] });
  const exists = s.exists.trim() === "yes";
  return { pool, exists, info: exists ? parseQemuImgInfo(s.info) : undefined };
}

const describeSource = (spec: VolumeSpec) => ("url" in spec.source ? spec.source.url : spec.source.hostPath);

const replaceOnChange = (Object.keys(VOLUME_FIELD_RULES) as (keyof VolumeSpec)[]).filter((k) => VOLUME_FIELD_RULES[k].replaces);

export const volumeProvider = libvirtObjectProvider<VolumeSpec, VolumePlan, VolumeState>({
  schema: volumeSchema,
  identity: (spec) => `volume/${spec.pool}/${spec.name}`,
  replaceOnChange,
  async plan(host, spec, state) {
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
    if (!facts.exists) return { kind: "import", steps: planVolumeImport(spec, facts)! };
    const problem = checkStagedImage(spec, facts.info!);
    if (problem) throw new InputError("format", problem.replace("the image", `${volumePath(spec, facts)}, which is already on the host,`));
    const ours = state?.imported ?? nameInStack() === spec.name;
    const outputs = volumeOutputs(volumePath(spec, facts), facts.info!);
    return {
      kind: "present",
      state: { ...outputs, imported: state?.imported ?? false },
      warning: ours ? undefined : `${outputs.path} is already on the host: it is used as it is (not imported again) and left in place on delete`,
    };
  },
  describe(plan) {
    if (plan.kind === "import") return [...plan.steps.stage, plan.steps.inspect, ...plan.steps.commit].map((s) => s.describe);
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
    await runSteps(host, planVolumeDelete(spec, await readVolumeFacts(host, spec)));
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
