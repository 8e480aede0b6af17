// StoragePool: a libvirt dir pool, defined, started and autostarted as planPool says. A pool of
// that name or directory that this stack did not define is refused unless adopt is true. Delete
// stops and undefines it; the directory stays unless removeDirectoryOnDelete.
import * as pulumi from "@pulumi/pulumi";
import { HostResource, hostResourceProvider } from "../hostResource";
import { runSteps, type HostStep } from "../hostStep";
import { ConnectionInput } from "../ssh/connection";
import type { RemoteHost } from "../ssh/host";
import { readSections } from "../ssh/sections";
import { namedBefore, parsePoolsSection, POOLS_SNIPPET } from "./libvirtResource";
import { planPool, planPoolDelete, POOL_FIELD_RULES, storagePoolSchema, type PoolHostFacts, type PoolState, type StoragePoolInputs, type StoragePoolSpec } from "./pool";
import { stackUuid } from "./stackUuid";
import { virsh } from "./virsh";

async function readPoolFacts(host: RemoteHost, spec: StoragePoolSpec): Promise<PoolHostFacts> {
  const s = await readSections(host, { pools: POOLS_SNIPPET, directory: '[ -d "$1" ] && echo yes' }, { args: [spec.path] });
  return { pools: parsePoolsSection(s.pools), targetDirectoryExists: s.directory.trim() === "yes" };
}

/** The replace-on-change keys are the pure layer's: name, type and path. */
const replaceOnChange = (Object.keys(POOL_FIELD_RULES) as (keyof StoragePoolSpec)[]).filter((k) => POOL_FIELD_RULES[k].replaces);

export const storagePoolProvider = hostResourceProvider<StoragePoolSpec, HostStep[], PoolState>({
  schema: storagePoolSchema,
  identity: (spec) => `pool/${spec.name}`,
  replaceOnChange,
  async plan(host, spec, state, previous, stack) {
    const facts = await readPoolFacts(host, spec);
    const found = facts.pools.find((p) => p.name === spec.name);
    const recorded = state ?? (found && namedBefore(previous, spec.name) ? { uuid: found.uuid } : undefined);
    return planPool(spec, facts, recorded, stackUuid(stack, "pool", spec.name));
  },
  describe: (steps) => steps.map((s) => s.describe),
  async apply(host, steps, spec) {
    await runSteps(host, steps);
    const uuid = (await host.run(virsh("pool-uuid", "--pool", spec.name))).stdout.trim();
    return { uuid };
  },
  async revert(host, spec, state) {
    await runSteps(host, planPoolDelete(spec, await readPoolFacts(host, spec), state));
  },
});

/** The StoragePool inputs (see pool.ts), each may be an output of another resource. */
export type StoragePoolArgs = { [K in keyof StoragePoolInputs]: pulumi.Input<StoragePoolInputs[K]> } & { connection: pulumi.Input<ConnectionInput> };

export class StoragePool extends HostResource {
  declare readonly name: pulumi.Output<string>;
  declare readonly path: pulumi.Output<string>;
  declare readonly state: pulumi.Output<PoolState>;

  constructor(name: string, args: StoragePoolArgs, opts?: pulumi.CustomResourceOptions) {
    super("StoragePool", name, args, opts);
  }
}
