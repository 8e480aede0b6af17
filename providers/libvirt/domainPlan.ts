import type { HostStep } from "../hostStep";
import { desiredDomain, diffDomain, observedDomain } from "./domainDiff";
import { SHUTDOWN_TIMEOUT_SECONDS, type DomainSpec } from "./domainSpec";
import type { DomainHostFacts, ExistingDomain } from "./domainXml";
import type { FieldChange } from "./fieldChanges";
import { virsh } from "./virsh";

/** What a LibvirtDomain keeps in Pulumi state to recognise its domain on the host. */
export interface DomainState {
  readonly uuid: string;
}

export interface DomainPlan {
  /** The XML `define` sends (also what preview can show). */
  readonly xml: string;
  /** Empty when the domain is created. */
  readonly changes: readonly FieldChange[];
  readonly steps: readonly HostStep[];
}

function defineStep(name: string, xml: string): HostStep {
  // --validate checks the XML against libvirt's schema, so a mistake fails here and not at start.
  return { describe: `define domain ${name}`, argv: virsh("define", "--file", "/dev/stdin", "--validate"), stdin: xml };
}

function startStep(name: string, resetNvram: boolean): HostStep {
  // A firmware change keeps the old variable store (e.g. secure boot on) unless it is reset (libvirt >= 8.1).
  return resetNvram
    ? { describe: `start domain ${name} with fresh UEFI variables`, argv: virsh("start", "--domain", name, "--reset-nvram") }
    : { describe: `start domain ${name}`, argv: virsh("start", "--domain", name) };
}

function shutdownStep(name: string, timeoutSeconds: number): HostStep {
  return {
    describe: `shut down domain ${name}`,
    argv: virsh("shutdown", "--domain", name),
    waitFor: {
      argv: virsh("domstate", "--domain", name),
      until: "shut off",
      timeoutSeconds,
      timeoutMessage:
        `domain ${name} did not shut down within ${timeoutSeconds} s of the ACPI request (virsh shutdown); ` +
        `shut the guest down from inside, or power it off with virsh destroy ${name}, then run pulumi up again`,
    },
  };
}

function autostartStep(name: string, on: boolean): HostStep {
  return on
    ? { describe: `start domain ${name} at boot`, argv: virsh("autostart", "--domain", name) }
    : { describe: `do not start domain ${name} at boot`, argv: virsh("autostart", "--domain", name, "--disable") };
}

function refuseForeign(spec: DomainSpec, existing: ExistingDomain, state: DomainState | undefined, stackUuid: string | undefined): void {
  const found = existing.definition.uuid;
  if (spec.adopt || (state !== undefined && found === state.uuid) || found === stackUuid) return;
  throw new Error(
    state === undefined
      ? `LibvirtDomain ${spec.name}: a domain of that name is already defined on the host (uuid ${found}, ${existing.state}) ` +
          `and this stack did not create it. Set adopt: true to manage it (its definition is replaced by the declared one), ` +
          `or choose another name.`
      : `LibvirtDomain ${spec.name}: the domain on the host has uuid ${found}, but this stack created uuid ${state.uuid}, ` +
          `so it was defined again outside Pulumi. Set adopt: true to manage the one on the host, or remove it ` +
          `(virsh undefine --nvram ${spec.name}) and run pulumi up again.`,
  );
}

/**
 * Steps that make the host's domain match `spec`: define the XML when any owned field differs,
 * restart a running guest whose boot-time fields changed (graceful shutdown, then start), start or
 * shut down per `running`, and set autostart. A second run with the same facts has no steps.
 * `state` is absent on create; a domain that exists then is only touched when it carries
 * `stackUuid` (this stack defined it, see stackUuid.ts; a new domain gets it) or with adopt: true.
 */
export function planDomain(spec: DomainSpec, facts: DomainHostFacts, state?: DomainState, stackUuid?: string): DomainPlan {
  const existing = facts.existing;
  if (existing) refuseForeign(spec, existing, state, stackUuid);
  const { xml, projection: desired } = desiredDomain(spec, facts, stackUuid);
  const name = spec.name;

  if (!existing) {
    const steps = [defineStep(name, xml)];
    if (spec.autostart) steps.push(autostartStep(name, true));
    if (spec.running) steps.push(startStep(name, false));
    return { xml, changes: [], steps };
  }

  const actual = observedDomain(existing);
  const changes = diffDomain(desired, actual);
  const replaced = changes.filter((c) => !c.applyInPlace).map((c) => c.field);
  if (replaced.length > 0) {
    throw new Error(`LibvirtDomain ${name}: ${replaced.join(", ")} cannot change in place; the domain has to be replaced`);
  }
  const definitionChanged = changes.some((c) => c.field !== "autostart" && c.field !== "running");
  const restart = spec.running && changes.some((c) => c.needsRestart);
  const resetNvram = changes.some((c) => c.field === "firmware") && desired.firmware !== "bios";

  const steps: HostStep[] = [];
  if (definitionChanged) steps.push(defineStep(name, xml));
  if (actual.running && (!spec.running || restart)) steps.push(shutdownStep(name, spec.shutdownTimeoutSeconds));
  if (spec.running && (!actual.running || restart)) steps.push(startStep(name, resetNvram));
  if (actual.autostart !== spec.autostart) steps.push(autostartStep(name, spec.autostart));
  return { xml, changes, steps };
}

/**
 * Steps that remove the domain: a graceful shutdown if it runs, then undefine with its UEFI
 * variable store and any managed-save image (libvirt refuses to undefine while either exists).
 * Storage volumes stay: they are resources of their own. A domain whose UUID is not the one in
 * `state` was replaced outside Pulumi and is left alone.
 */
export function planDomainDelete(name: string, existing: ExistingDomain | undefined, state?: DomainState, shutdownTimeoutSeconds = SHUTDOWN_TIMEOUT_SECONDS): HostStep[] {
  if (!existing || (state !== undefined && existing.definition.uuid !== state.uuid)) return [];
  const steps = observedDomain(existing).running ? [shutdownStep(name, shutdownTimeoutSeconds)] : [];
  steps.push({ describe: `undefine domain ${name}`, argv: virsh("undefine", "--domain", name, "--nvram", "--managed-save") });
  return steps;
}
