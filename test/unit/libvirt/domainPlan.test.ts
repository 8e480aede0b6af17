import fc from "fast-check";
import { planDomain, planDomainDelete } from "../../../providers/libvirt/domainPlan";
import { SHUTDOWN_TIMEOUT_SECONDS } from "../../../providers/libvirt/domainSpec";
import { domainSpecSchema, type DomainSpec } from "../../../providers/libvirt/domainSpec";
import { parseDomainXml, type DomainHostFacts, type ExistingDomain } from "../../../providers/libvirt/domainXml";
import { domainCase } from "./domainArbitraries";
import { homeAssistantInputs, inactiveFixture, referenceFacts } from "./referenceHost";

const homeAssistant = domainSpecSchema.parse(homeAssistantInputs);
const UUID = "5b7f6c2e-3d8a-4e0b-9a51-2f4c8d9e1a37";
const virsh = ["env", "LC_ALL=C", "virsh", "--connect", "qemu:///system"];
const shutdown = {
  describe: "shut down domain homeassistant",
  argv: [...virsh, "shutdown", "--domain", "homeassistant"],
  waitFor: {
    argv: [...virsh, "domstate", "--domain", "homeassistant"],
    until: "shut off",
    timeoutSeconds: SHUTDOWN_TIMEOUT_SECONDS,
    timeoutMessage:
      "domain homeassistant did not shut down within 300 s of the ACPI request (virsh shutdown); shut the guest down from inside, " +
      "or power it off with virsh destroy homeassistant, then run pulumi up again",
  },
};

function onHost(state: string, edit?: [string, string]): DomainHostFacts {
  const xml = edit ? inactiveFixture.replace(...edit) : inactiveFixture;
  return { ...referenceFacts, existing: { definition: parseDomainXml(xml), autostart: true, state } };
}

/** What the host holds after `virsh define` of `xml`: libvirt assigns the UUID and any missing MAC. */
function defined(xml: string, autostart: boolean, running: boolean): ExistingDomain {
  const definition = parseDomainXml(xml);
  return {
    definition: { ...definition, uuid: UUID, interfaces: definition.interfaces.map((nic, i) => ({ ...nic, mac: nic.mac ?? `52:54:00:00:00:0${i}` })) },
    autostart,
    state: running ? "running" : "shut off",
  };
}

describe("planDomain", () => {
  it("defines, autostarts and starts a new domain, sending the XML on stdin", () => {
    const plan = planDomain(homeAssistant, referenceFacts);
    expect(plan.changes).toEqual([]);
    expect(plan.steps).toEqual([
      { describe: "define domain homeassistant", argv: [...virsh, "define", "--file", "/dev/stdin", "--validate"], stdin: plan.xml },
      { describe: "start domain homeassistant at boot", argv: [...virsh, "autostart", "--domain", "homeassistant"] },
      { describe: "start domain homeassistant", argv: [...virsh, "start", "--domain", "homeassistant"] },
    ]);
  });

  it("only defines a domain declared stopped and manual", () => {
    expect(planDomain({ ...homeAssistant, autostart: false, running: false }, referenceFacts).steps.map((s) => s.describe)).toEqual([
      "define domain homeassistant",
    ]);
  });

  it("has nothing to do once the plan is applied (planning twice is planning once)", () => {
    fc.assert(
      fc.property(domainCase, ({ inputs, facts }) => {
        const spec = domainSpecSchema.parse(inputs);
        const created = planDomain(spec, facts);
        const after = { ...facts, existing: defined(created.xml, spec.autostart, spec.running) };
        expect(planDomain(spec, after, { uuid: UUID })).toMatchObject({ changes: [], steps: [] });
      }),
    );
  });

  it("leaves the reference host's domain alone when nothing changed", () => {
    expect(planDomain(homeAssistant, onHost("running"), { uuid: UUID })).toMatchObject({ changes: [], steps: [] });
  });

  it("redefines and restarts a running guest whose memory changed", () => {
    const plan = planDomain(homeAssistant, onHost("running", ["<memory unit='KiB'>4194304</memory>", "<memory unit='KiB'>8388608</memory>"]), { uuid: UUID });
    expect(plan.changes).toEqual([{ field: "memoryMiB", from: 8192, to: 4096, applyInPlace: true, needsRestart: true }]);
    expect(plan.steps).toEqual([
      { describe: "define domain homeassistant", argv: [...virsh, "define", "--file", "/dev/stdin", "--validate"], stdin: plan.xml },
      shutdown,
      { describe: "start domain homeassistant", argv: [...virsh, "start", "--domain", "homeassistant"] },
    ]);
  });

  it("redefines without a restart what the guest does not see", () => {
    const plan = planDomain({ ...homeAssistant, description: "HAOS 7.5" }, onHost("running"), { uuid: UUID });
    expect(plan.steps.map((s) => s.describe)).toEqual(["define domain homeassistant"]);
  });

  it("shuts a guest down when it is declared stopped, and switches autostart off", () => {
    const plan = planDomain({ ...homeAssistant, running: false, autostart: false }, onHost("running"), { uuid: UUID });
    expect(plan.steps).toEqual([shutdown, { describe: "do not start domain homeassistant at boot", argv: [...virsh, "autostart", "--domain", "homeassistant", "--disable"] }]);
  });

  it("starts with fresh UEFI variables after the firmware changed", () => {
    const bios = planDomain({ ...homeAssistant, boot: "bios" }, referenceFacts);
    const facts = { ...referenceFacts, existing: defined(bios.xml, true, false) };
    const plan = planDomain(homeAssistant, facts, { uuid: UUID });
    expect(plan.changes.map((c) => [c.field, c.from, c.to])).toEqual([
      ["firmware", "bios", "uefi"],
      ["running", false, true],
    ]);
    expect(plan.steps.map((s) => s.argv.slice(5))).toEqual([
      ["define", "--file", "/dev/stdin", "--validate"],
      ["start", "--domain", "homeassistant", "--reset-nvram"],
    ]);
  });

  it("refuses a domain of that name it did not create, unless adopt is true", () => {
    expect(() => planDomain(homeAssistant, onHost("shut off"))).toThrow(
      `LibvirtDomain homeassistant: a domain of that name is already defined on the host (uuid ${UUID}, shut off) and this stack ` +
        "did not create it. Set adopt: true to manage it (its definition is replaced by the declared one), or choose another name.",
    );
    const adopted = planDomain({ ...homeAssistant, adopt: true }, onHost("shut off", ["<cpu mode='host-passthrough' check='none' migratable='on'/>", "<cpu mode='host-model' check='partial'/>"]));
    expect(adopted.steps.map((s) => s.describe)).toEqual(["define domain homeassistant", "start domain homeassistant"]);
  });

  it("defines a new domain with the stack's UUID, and takes one that carries it as its own: a killed run defined it before Pulumi recorded it", () => {
    const own = "0b6c5a3e-2f1d-5e4c-8b7a-6d5e4f3a2b1c";
    const created = planDomain(homeAssistant, referenceFacts, undefined, own);
    expect(parseDomainXml(created.xml).uuid).toBe(own);
    const killed = { ...referenceFacts, existing: { definition: parseDomainXml(created.xml), autostart: false, state: "shut off" } };
    const resumed = planDomain(homeAssistant, killed, undefined, own);
    expect(resumed.changes.map((c) => c.field)).toEqual(["autostart", "running"]);
    expect(resumed.steps.map((s) => s.describe)).toEqual(["start domain homeassistant", "start domain homeassistant at boot"]);
    expect(() => planDomain(homeAssistant, killed, undefined, "0b6c5a3e-2f1d-5e4c-8b7a-000000000000")).toThrow("this stack did not create it");
  });

  it("refuses a domain that was defined again outside Pulumi", () => {
    expect(() => planDomain(homeAssistant, onHost("running"), { uuid: "00000000-0000-4000-8000-000000000000" })).toThrow(
      `LibvirtDomain homeassistant: the domain on the host has uuid ${UUID}, but this stack created uuid 00000000-0000-4000-8000-000000000000, ` +
        "so it was defined again outside Pulumi. Set adopt: true to manage the one on the host, or remove it " +
        "(virsh undefine --nvram homeassistant) and run pulumi up again.",
    );
  });

  it("refuses to change the name in place", () => {
    const facts = onHost("running");
    const renamed: DomainSpec = { ...homeAssistant, name: "haos", adopt: true };
    expect(() => planDomain(renamed, facts)).toThrow("LibvirtDomain haos: name cannot change in place; the domain has to be replaced");
  });
});

describe("planDomainDelete", () => {
  const undefine = { describe: "undefine domain homeassistant", argv: [...virsh, "undefine", "--domain", "homeassistant", "--nvram", "--managed-save"] };

  it("shuts a running guest down, then undefines it with its UEFI variables", () => {
    expect(planDomainDelete("homeassistant", onHost("running").existing, { uuid: UUID })).toEqual([shutdown, undefine]);
    expect(planDomainDelete("homeassistant", onHost("shut off").existing, { uuid: UUID })).toEqual([undefine]);
  });

  it("does nothing for a domain that is gone or is not the one it created", () => {
    expect(planDomainDelete("homeassistant", undefined, { uuid: UUID })).toEqual([]);
    expect(planDomainDelete("homeassistant", onHost("running").existing, { uuid: "00000000-0000-4000-8000-000000000000" })).toEqual([]);
  });
});

describe("shutdownTimeoutSeconds", () => {
  it("is how long destroy waits for the guest before the step fails", () => {
    const [shutdown] = planDomainDelete("homeassistant", onHost("running").existing, { uuid: UUID }, 15);
    expect(shutdown.waitFor).toMatchObject({ timeoutSeconds: 15, timeoutMessage: expect.stringContaining("within 15 s of the ACPI request") });
  });
});
