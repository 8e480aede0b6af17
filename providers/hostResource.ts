// The shape every host resource shares: check validates the inputs, then reads the host and plans,
// so `pulumi preview --diff` lists the exact changes (as `plannedChanges`) and refuses a bad plan
// before anything is written; create/update re-plan and apply; delete reverts what the state says
// this resource did; read re-plans to detect drift.
import * as pulumi from "@pulumi/pulumi";
import { isDeepStrictEqual } from "util";
import { z } from "zod";
import { hasUnknown, validate } from "./check";
import { KindResource } from "./dynamic";
import { failpoint } from "./failpoint";
import { Connection, ConnectionSchema, connectionLabel } from "./ssh/connection";
import { RemoteHost, withHost } from "./ssh/host";
import { lockOwner, withHostLock } from "./ssh/hostLock";

/** A refusal that belongs to one input key: `pulumi preview` shows it against that key. */
export class InputError extends Error {
  constructor(
    readonly property: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The resource's own properties as the engine recorded them before this run, without the ones this
 * base adds: its inputs in check (the engine's olds) and in update (the recorded outputs, which hold
 * them); undefined on a create and in read. As recorded, not parsed: an older version may have
 * written them under other rules, so a plan reads what it needs leniently.
 */
export type PreviousInputs = Readonly<Record<string, unknown>>;

/**
 * The stack that plans, and the host it plans for, as "project/stack@host": what names the objects
 * a stack creates on a host as its own (see libvirt/stackUuid.ts). Undefined where the properties
 * do not say (state recorded before they did, a unit test's provider call).
 */
export type StackOnHost = string | undefined;

export interface HostResourceDefinition<I, P, S> {
  /** The resource's own inputs; `connection` is added and checked here. */
  schema: z.ZodType<I>;
  /**
   * Reads the host and plans; `state` is what the last apply recorded (undefined on create and in
   * check), `previous` what a plan compares with when the state alone cannot say what changed.
   */
  plan(host: RemoteHost, inputs: I, state: S | undefined, previous: PreviousInputs | undefined, stack: StackOnHost): Promise<P>;
  /** One line per change the plan makes on the host; none means the host is as wanted. */
  describe(plan: P): string[];
  /** What the user should know but that changes nothing; shown on the provider's stderr. */
  warnings?(plan: P): string[];
  apply(host: RemoteHost, plan: P, inputs: I): Promise<S>;
  revert(host: RemoteHost, inputs: I, state: S): Promise<void>;
  /** The resource's id on its host, e.g. the file it owns. */
  identity(inputs: I): string;
  /** Inputs whose change means a new resource (old one reverted first). */
  replaceOnChange?: readonly (keyof I & string)[];
  /**
   * What the plan decided that other resources need before this one is applied: the `planned`
   * output, known at preview (check computes it), where `state` is only known after the apply.
   */
  planned?(plan: P): Record<string, unknown>;
  /** Starts, without waiting, reads that other resources' checks will make (see bootReads.ts); check and refresh only. */
  prefetch?(host: RemoteHost, inputs: I): void;
}

/** The properties this base adds (the connection, its outputs, the stack, the serialized provider) apart from the resource's own. */
function ownProperties(props: Record<string, unknown>) {
  const { connection, plannedChanges: _p, planned: _d, state: _s, __provider: _v, stackName, project, ...own } = props;
  const host = (connection as { host?: unknown } | undefined)?.host;
  const stack: StackOnHost =
    typeof project === "string" && typeof stackName === "string" && typeof host === "string" ? `${project}/${stackName}@${host}` : undefined;
  return { connection, stackName, project, stack, own };
}

/** The engine's olds as `previous`: a create's olds are empty. */
function previousInputs(olds: Record<string, unknown> | undefined): PreviousInputs | undefined {
  const { own } = ownProperties(olds ?? {});
  return Object.keys(own).length > 0 ? own : undefined;
}

export function hostResourceProvider<I extends object, P, S>(
  definition: HostResourceDefinition<I, P, S>,
): pulumi.dynamic.ResourceProvider {
  const parse = (props: Record<string, unknown>) => {
    const { connection, stackName, project, stack, own } = ownProperties(props);
    return {
      connection: ConnectionSchema.parse(connection),
      inputs: definition.schema.parse(own),
      owner: lockOwner(typeof stackName === "string" ? stackName : undefined),
      named: { stackName, project },
      stack,
    };
  };
  const planned = (plan: P) => (definition.planned ? { planned: definition.planned(plan) } : {});
  const outputs = (connection: Connection, inputs: I, plan: P, state: S, named: Record<string, unknown>) =>
    plainOutputs({ ...inputs, connection, plannedChanges: [], ...planned(plan), state, ...named });
  const applyPlan = async (host: RemoteHost, inputs: I, state: S | undefined, previous: PreviousInputs | undefined, stack: StackOnHost) => {
    const plan = await definition.plan(host, inputs, state, previous, stack);
    return { plan, state: await definition.apply(host, plan, inputs) };
  };
  // Every change happens under the host lock, from reading the host to the last write.
  const locked = <T>(connection: Connection, owner: string, fn: (host: RemoteHost) => Promise<T>) =>
    withHostLock(connection, owner, () => withHost(connection, fn));

  return {
    async check(olds, news) {
      const { connection, stackName, project, stack, own } = ownProperties(news);
      const checkedConnection = validate(ConnectionSchema, connection, "connection");
      const checkedInputs = validate(definition.schema, own);
      const failures = [checkedConnection, checkedInputs].flatMap((r) => (r.ok ? [] : r.failures));
      if (!checkedConnection.ok || !checkedInputs.ok) return { failures };
      const checked = { ...checkedInputs.data, connection: checkedConnection.data, stackName, project };
      const later = "(more once values known after apply are known)";
      if (hasUnknown(connection)) return { inputs: { ...checked, plannedChanges: [later] } };
      // Inputs still unknown (another resource's output) only make the plan partial, not wrong.
      const partial = hasUnknown(own);
      try {
        const plan = await withHost(checkedConnection.data, (host) => {
          definition.prefetch?.(host, checkedInputs.data);
          return definition.plan(host, checkedInputs.data, undefined, previousInputs(olds), stack);
        });
        for (const warning of definition.warnings?.(plan) ?? []) console.warn(`warning: ${warning}`);
        const plannedChanges = definition.describe(plan);
        // A plan from partly unknown inputs plans the known part only: what it decided stays unknown.
        if (partial) return { inputs: { ...checked, plannedChanges: [...plannedChanges, later] } };
        return { inputs: { ...checked, plannedChanges, ...planned(plan) } };
      } catch (err) {
        if (partial) return { inputs: { ...checked, plannedChanges: [later] } };
        const property = err instanceof InputError ? err.property : "(host)";
        return { failures: [{ property, reason: (err as Error).message }] };
      }
    },

    async diff(_id, olds: Record<string, unknown>, news: Record<string, unknown>) {
      const before = parse(olds);
      const after = parse(news);
      const replaces = [
        ...(definition.replaceOnChange ?? []).filter((k) => !isDeepStrictEqual(before.inputs[k], after.inputs[k])),
        ...(before.connection.host !== after.connection.host ? ["connection"] : []),
      ];
      // news: what check planned now; olds: drift that a refresh found (an apply leaves none).
      const pending = [news, olds].some((p) => ((p.plannedChanges as string[] | undefined) ?? []).length > 0);
      // State recorded before the `planned` output existed gets it through an update that changes nothing.
      const unplanned = definition.planned !== undefined && olds.planned === undefined;
      const changes =
        replaces.length > 0 ||
        pending ||
        unplanned ||
        !isDeepStrictEqual(before.inputs, after.inputs) ||
        !isDeepStrictEqual(before.connection, after.connection);
      return { changes, replaces, deleteBeforeReplace: true };
    },

    async create(props: Record<string, unknown>) {
      const { connection, inputs, owner, named, stack } = parse(props);
      const { plan, state } = await locked(connection, owner, (host) => applyPlan(host, inputs, undefined, undefined, stack));
      // The window of every create: the host has changed, the engine has not recorded it yet.
      await failpoint(`created ${definition.identity(inputs)}`);
      return { id: `${connectionLabel(connection)}:${definition.identity(inputs)}`, outs: outputs(connection, inputs, plan, state, named) };
    },

    async update(_id, olds: Record<string, unknown>, news: Record<string, unknown>) {
      const { connection, inputs, owner, named, stack } = parse(news);
      const { plan, state } = await locked(connection, owner, (host) => applyPlan(host, inputs, olds.state as S, previousInputs(olds), stack));
      return { outs: outputs(connection, inputs, plan, state, named) };
    },

    async read(id, props: Record<string, unknown>) {
      const { connection, inputs, stack } = parse(props);
      const state = props.state as S;
      const plannedChanges = await withHost(connection, async (host) => {
        definition.prefetch?.(host, inputs);
        return definition.describe(await definition.plan(host, inputs, state, undefined, stack));
      });
      return { id, props: { ...props, plannedChanges } };
    },

    async delete(_id, props: Record<string, unknown>) {
      const { connection, inputs, owner } = parse(props);
      await locked(connection, owner, (host) => definition.revert(host, inputs, props.state as S));
    },
  };
}

/**
 * Outputs as the dynamic provider can send them: it hands them to protobuf's Struct.fromJavaScript
 * as they are, which throws "Unexpected struct type." on an `undefined` anywhere inside (an
 * optional state field) after the host was already changed. JSON drops those keys.
 */
export function plainOutputs<T>(outputs: T): T {
  return JSON.parse(JSON.stringify(outputs)) as T;
}

/** The program side of a host resource: its provider by kind, and the connection kept secret in the state. */
export abstract class HostResource extends KindResource {
  declare readonly plannedChanges: pulumi.Output<string[]>;

  protected constructor(kind: string, name: string, args: object, opts?: pulumi.CustomResourceOptions) {
    // The stack names this run to another run that finds the host locked (see hostLock.ts); with the
    // project, it names what this stack creates on its host (StackOnHost).
    super(kind, name, { ...args, plannedChanges: undefined, planned: undefined, state: undefined, stackName: pulumi.getStack(), project: pulumi.getProject() }, {
      ...opts,
      additionalSecretOutputs: ["connection"],
    });
  }
}
