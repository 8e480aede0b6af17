import type { DomainSpec } from "./domainSpec";
import { parseDomainXml, renderDomainXml, type DomainDefinition, type DomainHostFacts, type ExistingDomain } from "./domainXml";
import { diffFields, type FieldChange, type FieldRule, IN_PLACE, REPLACE, REDEFINE } from "./fieldChanges";

// Compare declared and actual domains on the fields we own only. The actual side is always the
// INACTIVE XML (`virsh dumpxml --inactive`): the live XML of a running guest carries runtime
// additions (device aliases, tap devices, security labels) and lags behind a redefinition.
// libvirt fills in defaults on define (controllers, PCI addresses, <target dev>, pc-q35-7.2 for
// q35, the firmware it selected); the projection in parseDomainXml leaves those out, so the
// domain libvirt made from our XML projects to the same value as our XML itself.

/** A domain's definition plus the two runtime settings we manage. */
export interface DomainProjection extends DomainDefinition {
  readonly autostart: boolean;
  /** Active (`virsh domstate` is anything but "shut off"). */
  readonly running: boolean;
}


/**
 * How each field changes. Replace: libvirt identifies a domain by name and UUID, so another name
 * is another domain (delete before create, the name being fixed); a different UUID means the
 * domain was recreated outside Pulumi. Everything in the definition is otherwise applied in place
 * by `virsh define`, and the boot-time parts (memory, CPUs, devices, firmware) reach a running
 * guest at its next start. Description and OS metadata are not guest-visible. autostart and
 * running are applied with `virsh autostart` / `start` / `shutdown`.
 */
export const DOMAIN_FIELD_RULES: { readonly [K in keyof DomainProjection]-?: FieldRule } = {
  name: REPLACE,
  uuid: REPLACE,
  type: REDEFINE,
  description: IN_PLACE,
  osinfoId: IN_PLACE,
  memoryMiB: REDEFINE,
  vcpus: REDEFINE,
  cpuMode: REDEFINE,
  machine: REDEFINE,
  firmware: REDEFINE,
  sysinfo: REDEFINE,
  disks: REDEFINE,
  interfaces: REDEFINE,
  hostdevs: REDEFINE,
  memballoon: REDEFINE,
  graphicsVideoSoundInput: REDEFINE,
  autostart: IN_PLACE,
  running: IN_PLACE,
};

/** The XML to define for `spec` (a new domain with `newUuid`), and its projection with the declared runtime settings. */
export function desiredDomain(spec: DomainSpec, facts: DomainHostFacts, newUuid?: string): { xml: string; projection: DomainProjection } {
  const xml = renderDomainXml(spec, facts, newUuid);
  return { xml, projection: { ...parseDomainXml(xml), autostart: spec.autostart, running: spec.running } };
}

/** The projection of a domain found on the host. */
export function observedDomain(existing: ExistingDomain): DomainProjection {
  return { ...existing.definition, autostart: existing.autostart, running: existing.state !== "shut off" };
}

/**
 * What has to change to turn `actual` into `desired`: from = actual, to = desired. Used for
 * updates (desired from the inputs) and for drift (desired = the projection recorded in state at
 * the last apply, actual = read from the host now). needsRestart is only true while `actual` runs.
 * A UUID or MAC the desired side leaves to libvirt (null) is not compared.
 */
export function diffDomain(desired: DomainProjection, actual: DomainProjection): FieldChange[] {
  const declared = {
    ...desired,
    uuid: desired.uuid ?? undefined,
    interfaces: desired.interfaces.map((nic, i) => ({ ...nic, mac: nic.mac ?? actual.interfaces[i]?.mac ?? null })),
  };
  return diffFields(actual, declared, DOMAIN_FIELD_RULES, actual.running);
}
