import { z } from "zod";
import type { HostStep } from "../hostStep";
import { expected, strictKeys } from "../inputErrors";
import { element, find, parseXml, renderXml, textOf } from "../text/xml";
import { type FieldRule, IN_PLACE, REPLACE } from "./fieldChanges";
import { absolutePath, libvirtName, normalisePath } from "./fieldSchemas";
import { parseVirshFields } from "./toolOutput";
import { virsh } from "./virsh";

// A directory storage pool, as the reference host made by hand:
//   virsh pool-define-as default dir --target /var/lib/libvirt/images
//   virsh pool-build default; virsh pool-start default; virsh pool-autostart default
// Defined with pool-define and XML rather than pool-define-as, which cannot set the UUID: the
// stack's own UUID (stackUuid.ts) is what recognises the pool after a run killed right after the define.

const poolShape = {
  name: libvirtName('"default"'),
  type: z.literal("dir", expected('"dir" (the only pool type supported)', '"dir"')).default("dir"),
  path: absolutePath("/var/lib/libvirt/images"),
  autostart: z.boolean(expected("true or false", "true")).default(true),
  /** Take over a pool that exists but was not created by this stack; it is then deleted with the stack. */
  adopt: z.boolean(expected("true or false", "true")).default(false),
  /** On delete, remove the directory too (`pool-delete`, which refuses a directory that is not empty). */
  removeDirectoryOnDelete: z.boolean(expected("true or false", "false")).default(false),
};

export const storagePoolSchema = z.strictObject(poolShape, strictKeys);

export type StoragePoolInputs = z.input<typeof storagePoolSchema>;
export type StoragePoolSpec = z.output<typeof storagePoolSchema>;

/** A pool defined on the host. */
export interface ExistingPool {
  readonly name: string;
  readonly uuid: string;
  readonly type: string;
  /** <target><path>, as libvirt stores it; null for pool types without one. */
  readonly targetPath: string | null;
  /** `virsh pool-info` State: "running", "inactive", "building", "degraded", "inaccessible". */
  readonly state: string;
  readonly autostart: boolean;
}

export interface PoolHostFacts {
  /** Every pool, active or not (`virsh pool-list --all --name`, then pool-dumpxml and pool-info each). */
  readonly pools: readonly ExistingPool[];
  /** The declared path is a directory on the host. */
  readonly targetDirectoryExists: boolean;
}

/** What a StoragePool keeps in Pulumi state to recognise its pool on the host. */
export interface PoolState {
  readonly uuid: string;
}

/** The fields of `virsh pool-dumpxml NAME` we use. */
export function parsePoolXml(xml: string): Pick<ExistingPool, "name" | "uuid" | "type" | "targetPath"> {
  const root = parseXml(xml);
  if (root.name !== "pool") throw new Error(`expected a <pool> document, found <${root.name}>`);
  const path = find(root, "target/path");
  return {
    name: textOf(find(root, "name")).trim(),
    uuid: textOf(find(root, "uuid")).trim().toLowerCase(),
    type: root.attributes.type ?? "unknown",
    targetPath: path ? textOf(path).trim() : null,
  };
}

/** One pool from its `virsh pool-dumpxml` and `virsh pool-info` output. */
export function existingPool(dumpXml: string, poolInfo: string): ExistingPool {
  const info = parseVirshFields(poolInfo);
  return { ...parsePoolXml(dumpXml), state: info.State ?? "unknown", autostart: info.Autostart === "yes" };
}

function describePool(pool: ExistingPool): string {
  return `uuid ${pool.uuid}, ${pool.type} at ${pool.targetPath ?? "no path"}, ${pool.state}, autostart ${pool.autostart ? "on" : "off"}`;
}

const samePath = (a: string | null, b: string) => a !== null && normalisePath(a) === b;

/** The XML `virsh pool-define` gets for a new pool: its name, directory and the stack's UUID for it. */
export function renderPoolXml(spec: StoragePoolSpec, uuid: string | undefined): string {
  return renderXml(
    element("pool", { type: "dir" }, [
      element("name", {}, [spec.name]),
      uuid !== undefined && element("uuid", {}, [uuid]),
      element("target", {}, [element("path", {}, [spec.path])]),
    ]),
  );
}

/**
 * Steps that make the host's pool match `spec`: define, build (only when the directory is
 * missing: pool-build also resets the mode of an existing one), start, autostart on or off, and
 * a refresh when adopting a running pool so its volume list is current. Refuses a name or a path
 * that another pool holds, unless it is the pool this stack recorded in `state`, one that carries
 * `stackUuid` (this stack defined it; see stackUuid.ts), or adopt is true. A second run with the
 * same facts has no steps.
 */
export function planPool(spec: StoragePoolSpec, facts: PoolHostFacts, state?: PoolState, stackUuid?: string): HostStep[] {
  const name = spec.name;
  const pool = facts.pools.find((p) => p.name === name);
  const pathHolder = facts.pools.find((p) => p.name !== name && samePath(p.targetPath, spec.path));
  if (pathHolder) {
    throw new Error(
      `StoragePool ${name}: path ${spec.path} is already the target of pool "${pathHolder.name}" (${describePool(pathHolder)}); ` +
        `libvirt allows one pool per directory. Declare that pool instead (name: "${pathHolder.name}" with adopt: true), ` +
        `or choose another path.`,
    );
  }

  const steps: HostStep[] = [];
  const build = { describe: `create directory ${spec.path}`, argv: virsh("pool-build", "--pool", name) };
  const start = { describe: `start pool ${name}`, argv: virsh("pool-start", "--pool", name) };
  const autostart = (on: boolean) =>
    on
      ? { describe: `start pool ${name} at boot`, argv: virsh("pool-autostart", "--pool", name) }
      : { describe: `do not start pool ${name} at boot`, argv: virsh("pool-autostart", "--pool", name, "--disable") };

  if (!pool) {
    steps.push({
      describe: `define pool ${name} (dir at ${spec.path})`,
      argv: virsh("pool-define", "--file", "/dev/stdin"),
      stdin: renderPoolXml(spec, stackUuid),
    });
    if (!facts.targetDirectoryExists) steps.push(build);
    steps.push(start);
    if (spec.autostart) steps.push(autostart(true));
    return steps;
  }

  const ours = (state !== undefined && pool.uuid === state.uuid) || pool.uuid === stackUuid;
  if (!ours && !spec.adopt) {
    throw new Error(
      `StoragePool ${name}: a pool of that name already exists on the host (${describePool(pool)}) and this stack did not ` +
        `create it. Set adopt: true to manage it (pulumi destroy will then remove it as well), or choose another name.`,
    );
  }
  if (pool.type !== "dir") {
    throw new Error(`StoragePool ${name}: the pool on the host is of type ${pool.type}, not dir; choose another name for a dir pool.`);
  }
  if (!samePath(pool.targetPath, spec.path)) {
    throw new Error(
      `StoragePool ${name}: the pool on the host targets ${pool.targetPath ?? "no path"}, not ${spec.path} as declared; ` +
        `set path: "${pool.targetPath}" to keep it as it is, or remove it (virsh pool-destroy ${name}; virsh pool-undefine ${name}) ` +
        `to have it defined at ${spec.path}.`,
    );
  }
  if (pool.state !== "running") {
    if (!facts.targetDirectoryExists) steps.push(build);
    steps.push(start);
  } else if (!ours) {
    steps.push({ describe: `rescan pool ${name}`, argv: virsh("pool-refresh", "--pool", name) });
  }
  if (pool.autostart !== spec.autostart) steps.push(autostart(spec.autostart));
  return steps;
}

/**
 * Steps that remove the pool: stop it, remove the directory when asked (pool-delete is rmdir for
 * a dir pool, so volumes left in it make it fail rather than vanish), then undefine it. A pool
 * whose UUID is not the one in `state` was replaced outside Pulumi and is left alone.
 */
export function planPoolDelete(spec: StoragePoolSpec, facts: PoolHostFacts, state?: PoolState): HostStep[] {
  const pool = facts.pools.find((p) => p.name === spec.name);
  if (!pool || (state !== undefined && pool.uuid !== state.uuid)) return [];
  const name = spec.name;
  const steps: HostStep[] = [];
  if (pool.state === "running") steps.push({ describe: `stop pool ${name}`, argv: virsh("pool-destroy", "--pool", name) });
  if (spec.removeDirectoryOnDelete) {
    steps.push({ describe: `remove directory ${pool.targetPath ?? spec.path}`, argv: virsh("pool-delete", "--pool", name) });
  }
  steps.push({ describe: `undefine pool ${name}`, argv: virsh("pool-undefine", "--pool", name) });
  return steps;
}


/**
 * name, type and path replace the pool (delete before create: libvirt allows one pool per name and
 * per directory); autostart is switched in place; adopt and removeDirectoryOnDelete only change
 * what the provider does, not the host.
 */
export const POOL_FIELD_RULES: { readonly [K in keyof StoragePoolSpec]-?: FieldRule } = {
  name: REPLACE,
  type: REPLACE,
  path: REPLACE,
  autostart: IN_PLACE,
  adopt: IN_PLACE,
  removeDirectoryOnDelete: IN_PLACE,
};
