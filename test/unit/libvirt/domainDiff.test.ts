import { DOMAIN_FIELD_RULES, desiredDomain, diffDomain, observedDomain, type DomainProjection } from "../../../providers/libvirt/domainDiff";
import { domainSpecSchema } from "../../../providers/libvirt/domainSpec";
import { parseDomainXml, type ExistingDomain } from "../../../providers/libvirt/domainXml";
import { homeAssistantInputs, inactiveFixture, referenceFacts } from "./referenceHost";

const homeAssistant = domainSpecSchema.parse(homeAssistantInputs);

/** The reference guest as the host has it, after `virsh edit` turned `from` into `to` in its XML. */
function onHost(edit: [string, string] | undefined, state = "running"): ExistingDomain {
  const xml = edit ? inactiveFixture.replace(edit[0], edit[1]) : inactiveFixture;
  if (edit) expect(xml).not.toBe(inactiveFixture);
  return { definition: parseDomainXml(xml), autostart: true, state };
}

function desiredAgainst(existing: ExistingDomain): DomainProjection {
  return desiredDomain(homeAssistant, { ...referenceFacts, existing }).projection;
}

describe("diffDomain", () => {
  it("applies a memory change in place, with a restart while the guest runs", () => {
    const existing = onHost(["<memory unit='KiB'>4194304</memory>", "<memory unit='KiB'>2097152</memory>"]);
    expect(diffDomain(desiredAgainst(existing), observedDomain(existing))).toEqual([
      { field: "memoryMiB", from: 2048, to: 4096, applyInPlace: true, needsRestart: true },
    ]);
  });

  it("needs no restart for a guest that is shut off", () => {
    const existing = onHost(["<vcpu placement='static'>2</vcpu>", "<vcpu placement='static'>4</vcpu>"], "shut off");
    expect(diffDomain(desiredAgainst(existing), observedDomain(existing))).toEqual([
      { field: "vcpus", from: 4, to: 2, applyInPlace: true, needsRestart: false },
      { field: "running", from: false, to: true, applyInPlace: true, needsRestart: false },
    ]);
  });

  it("replaces the domain for another name", () => {
    const existing = onHost(undefined);
    const renamed = desiredDomain({ ...homeAssistant, name: "haos" }, { ...referenceFacts, existing }).projection;
    expect(diffDomain(renamed, observedDomain(existing))).toEqual([
      { field: "name", from: "homeassistant", to: "haos", applyInPlace: false, needsRestart: false },
    ]);
  });

  it("sees a host device removed behind Pulumi's back as drift from the recorded state", () => {
    const recorded = observedDomain(onHost(undefined));
    const removed = onHost([
      /<hostdev mode='subsystem' type='pci' managed='yes'>\s*<source>\s*<address domain='0x0000' bus='0x00' slot='0x1a' function='0x1'\/>[\s\S]*?<\/hostdev>/.exec(inactiveFixture)![0],
      "",
    ]);
    expect(diffDomain(recorded, observedDomain(removed))).toEqual([
      { field: "hostdevs", from: ["0000:00:1a.0"], to: ["0000:00:1a.0", "0000:00:1a.1"], applyInPlace: true, needsRestart: true },
    ]);
  });

  it("sees a bridge, CPU mode and description changed with virsh edit", () => {
    const existing = onHost(["<source bridge='br0'/>", "<source bridge='virbr0'/>"]);
    expect(diffDomain(desiredAgainst(existing), observedDomain(existing)).map((c) => c.field)).toEqual(["interfaces"]);
    const cpu = onHost(["<cpu mode='host-passthrough' check='none' migratable='on'/>", "<cpu mode='host-model' check='partial'/>"]);
    expect(diffDomain(desiredAgainst(cpu), observedDomain(cpu))).toEqual([
      { field: "cpuMode", from: "host-model", to: "host-passthrough", applyInPlace: true, needsRestart: true },
    ]);
    const description = onHost(["<description>Home Assistant OS</description>", "<description>HA</description>"]);
    expect(diffDomain(desiredAgainst(description), observedDomain(description))).toEqual([
      { field: "description", from: "HA", to: "Home Assistant OS", applyInPlace: true, needsRestart: false },
    ]);
  });

  it("leaves a UUID and a MAC that libvirt chose alone, but not a UUID on record", () => {
    const existing = observedDomain(onHost(undefined));
    const undeclared = { ...existing, uuid: null, interfaces: existing.interfaces.map((nic) => ({ ...nic, mac: null })) };
    expect(diffDomain(undeclared, existing)).toEqual([]);
    const recreated = { ...existing, uuid: "00000000-0000-4000-8000-000000000000" };
    expect(diffDomain(existing, recreated)).toEqual([
      { field: "uuid", from: recreated.uuid, to: existing.uuid, applyInPlace: false, needsRestart: false },
    ]);
  });

  it("switches autostart and running in place", () => {
    const existing = onHost(undefined, "shut off");
    const desired = { ...desiredAgainst(existing), autostart: false };
    expect(diffDomain(desired, observedDomain(existing))).toEqual([
      { field: "autostart", from: true, to: false, applyInPlace: true, needsRestart: false },
      { field: "running", from: false, to: true, applyInPlace: true, needsRestart: false },
    ]);
  });

  it("decides for every field whether it replaces and whether it waits for a restart", () => {
    const table = Object.fromEntries(
      Object.entries(DOMAIN_FIELD_RULES).map(([field, rule]) => [field, rule.replaces ? "replace" : rule.restarts ? "in place, restart" : "in place"]),
    );
    expect(table).toEqual({
      name: "replace",
      uuid: "replace",
      type: "in place, restart",
      description: "in place",
      osinfoId: "in place",
      memoryMiB: "in place, restart",
      vcpus: "in place, restart",
      cpuMode: "in place, restart",
      machine: "in place, restart",
      firmware: "in place, restart",
      sysinfo: "in place, restart",
      disks: "in place, restart",
      interfaces: "in place, restart",
      hostdevs: "in place, restart",
      memballoon: "in place, restart",
      graphicsVideoSoundInput: "in place, restart",
      autostart: "in place",
      running: "in place",
    });
  });
});
