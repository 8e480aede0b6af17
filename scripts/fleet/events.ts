// What one stack's run says about itself, read from the engine's events (the Automation API's
// onEvent): the host it acts on, the resource step in flight, whether its HostReboot runs and why,
// the change counts, and the errors. A pure fold, so recorded events test it without a CLI.
import type { EngineEvent, OpMap } from "@pulumi/pulumi/automation";

/** The HostReboot step of a run: the resource, the engine's operation, and the inputs that changed. */
export interface RebootStep {
  resource: string;
  op: string;
  diffs: string[];
}

export interface RunObservation {
  /** host[:port] from the stack's config (the prelude event), once the run has started. */
  host?: string;
  /** The step in flight, e.g. "update s01-cmdline". */
  current?: string;
  /** Set when the run's HostReboot is created, updated or replaced: the host reboots (or would, in a preview). */
  reboot?: RebootStep;
  /** The engine's counts at the end of the run. */
  changes?: OpMap;
  /** The engine's error diagnostics in order, with the resource each names (none for the run's own "update failed"). */
  errors: Array<{ message: string; resource?: string }>;
}

export const emptyObservation = (): RunObservation => ({ errors: [] });

/** The operations that run a HostReboot's create or update: the ones that reboot. Delete never does (providers/reboot/resource.ts). */
const REBOOTING_OPS = new Set(["create", "update", "replace", "create-replacement"]);
const isHostReboot = (type: string) => type.includes("vfio-host:HostReboot");
const resourceName = (urn: string) => urn.split("::").at(-1) ?? urn;

/** The CLI's colour markup (<{%reset%}>) and ANSI escapes, which a summary line does not want. */
export function plainText(message: string): string {
  return message.replace(/<\{%[^%]*%\}>/g, "").replace(/\x1b\[[0-9;]*m/g, "").trim();
}

export function observe(seen: RunObservation, event: EngineEvent): RunObservation {
  if (event.preludeEvent) {
    const { config } = event.preludeEvent;
    const host = config["vfio-host:host"];
    const port = config["vfio-host:port"];
    return host ? { ...seen, host: port && port !== "22" ? `${host}:${port}` : host } : seen;
  }
  const pre = event.resourcePreEvent?.metadata;
  if (pre && pre.op !== "same" && !pre.type.startsWith("pulumi:providers:")) {
    const next = { ...seen, current: `${pre.op} ${resourceName(pre.urn)}` };
    return isHostReboot(pre.type) && REBOOTING_OPS.has(pre.op) ? { ...next, reboot: { resource: resourceName(pre.urn), op: pre.op, diffs: pre.diffs ?? [] } } : next;
  }
  if (event.resOutputsEvent || event.resOpFailedEvent) return { ...seen, current: undefined };
  if (event.summaryEvent) return { ...seen, changes: event.summaryEvent.resourceChanges, current: undefined };
  const diagnostic = event.diagnosticEvent;
  if (diagnostic?.severity === "error") {
    const message = plainText(diagnostic.message);
    if (!message) return seen;
    return { ...seen, errors: [...seen.errors, { message, resource: diagnostic.urn ? resourceName(diagnostic.urn) : undefined }] };
  }
  return seen;
}

/** Why a stack is scheduled as rebooting, from its preview: "s01-reboot would be updated (triggers changed)". */
export function rebootReason(step: RebootStep): string {
  const verb = step.op === "create" ? "created" : step.op === "update" ? "updated" : "replaced";
  return `${step.resource} would be ${verb}${step.diffs.length ? ` (${step.diffs.join(", ")} changed)` : ""}`;
}
