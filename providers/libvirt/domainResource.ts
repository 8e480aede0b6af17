// LibvirtDomain: a headless guest defined, started and autostarted as planDomain says, its
// definition compared with `virsh dumpxml --inactive` (so a `virsh edit` shows up as drift). A
// passed-through device must be on vfio-pci, or be one the stack's VfioBinding claims at its boot
// (vfioDevices): preview refuses any other. A new name replaces the domain (the old one goes
// first); delete shuts the guest down, forces it off if it does not go in time, and undefines it
// with its UEFI variables.
import * as pulumi from "@pulumi/pulumi";
import { HostResource, hostResourceProvider, InputError } from "../hostResource";
import { runStep, WaitTimeoutError } from "../hostStep";
import { ConnectionInput } from "../ssh/connection";
import type { RemoteHost } from "../ssh/host";
import { readSections } from "../ssh/sections";
import { find, parseXml, textOf } from "../text/xml";
import { planDomain, planDomainDelete, type DomainPlan, type DomainState } from "./domainPlan";
import { domainResourceSchema, type DomainInputs, type DomainSpec } from "./domainSpec";
import { parseDomainXml, type DomainHostFacts, type ResolvedVolume } from "./domainXml";
import type { FieldChange } from "./fieldChanges";
import { namedBefore } from "./libvirtResource";
import { parseOsinfoQuery, parseVirshFields } from "./toolOutput";
import { stackUuid } from "./stackUuid";
import { virsh, virshSh } from "./virsh";

/** A PCI device on the host: its driver ("" when none), or undefined when there is no such device. */
export type PciDrivers = Readonly<Record<string, string | undefined>>;

// Code and variable template of OVMF, for a libvirt without firmware autoselection: Debian 12 and
// Ubuntu 22.04 ship the 4M pair, older releases and Alpine the 2M one, Fedora its own directory.
const OVMF_PAIRS = [
  ["/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"],
  ["/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"],
  ["/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"],
];

const CAN_KVM = "[ -r /dev/kvm ] && [ -w /dev/kvm ]";

// "$1" is the domain name; then "vol:POOL/VOLUME" and "pci:ADDRESS" arguments.
const snippets = {
  xml: `${virshSh("dumpxml")} --inactive --domain "$1"`,
  info: `${virshSh("dominfo")} --domain "$1"`,
  state: `${virshSh("domstate")} --domain "$1"`,
  volumes: `for a; do case $a in vol:*) p=\${a#vol:}; printf '\\0%s\\0' "$p"; ${virshSh("vol-dumpxml")} --pool "\${p%%/*}" --vol "\${p#*/}" </dev/null;; esac; done`,
  pci: `for a; do case $a in pci:*) d=/sys/bus/pci/devices/\${a#pci:}
if [ -e "$d" ]; then drv=$(readlink "$d/driver") && drv=\${drv##*/} || drv=; echo "\${a#pci:} present $drv"; else echo "\${a#pci:} absent"; fi;; esac; done`,
  kvm: `${CAN_KVM} && echo yes`,
  domcapabilities: `${virshSh("domcapabilities")} --arch x86_64 --machine q35 --virttype "$(if ${CAN_KVM}; then echo kvm; else echo qemu; fi)"`,
  ovmf: `for f in ${OVMF_PAIRS.flat().join(" ")}; do [ -e "$f" ] && echo "$f"; done`,
};

/** `vol-dumpxml` outputs after "\0POOL/VOLUME\0" headers, as the volumes the domain can use. */
export function parseVolumesSection(section: string): ResolvedVolume[] {
  const parts = section.split("\0").slice(1);
  const volumes: ResolvedVolume[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    if (parts[i + 1].trim() === "") continue; // no such volume
    const [pool, name] = [parts[i].slice(0, parts[i].indexOf("/")), parts[i].slice(parts[i].indexOf("/") + 1)];
    const target = find(parseXml(parts[i + 1]), "target");
    const path = textOf(target && find(target, "path")).trim();
    volumes.push({ pool, name, path, format: (target && find(target, "format")?.attributes.type) ?? "raw" });
  }
  return volumes;
}

/** "ADDRESS present DRIVER" / "ADDRESS absent" lines. */
export function parsePciDrivers(section: string): PciDrivers {
  const drivers: Record<string, string | undefined> = {};
  for (const line of section.split("\n")) {
    const [address, presence, driver] = line.trim().split(" ");
    if (presence === "present") drivers[address] = driver ?? "";
    else if (presence === "absent") drivers[address] = undefined;
  }
  return drivers;
}

/** The firmware to name explicitly: only for a libvirt whose domcapabilities cannot autoselect it. */
export function explicitFirmware(domcapabilities: string, ovmfFiles: readonly string[]): DomainHostFacts["firmware"] {
  // No output at all: libvirt is not installed yet (HostPackages comes first); it will be a current one.
  if (domcapabilities.trim() === "" || /<enum name=["']firmware["']>/.test(domcapabilities)) return undefined;
  const pair = OVMF_PAIRS.find(([code, vars]) => ovmfFiles.includes(code) && ovmfFiles.includes(vars));
  return pair && { loader: pair[0], nvramTemplate: pair[1] };
}

/** Why hostdevs cannot go to the guest now: refused outright, or waiting for the stack's boot. */
export interface HostdevProblems {
  readonly refusals: string[];
  /** Devices the stack's VfioBinding claims at its next boot, still on their host driver. */
  readonly awaitingBoot: string[];
}

/**
 * Each passed-through device must exist and be on vfio-pci, which is a VfioBinding's job (at boot,
 * before any host driver takes it). With `vfioDevices` (the stack's binding), a device must be one
 * of them, and may still be on its host driver until the stack's reboot.
 */
export function hostdevProblems(hostdevs: readonly string[], drivers: PciDrivers, vfioDevices?: readonly string[]): HostdevProblems {
  const refusals: string[] = [];
  const awaitingBoot: string[] = [];
  hostdevs.forEach((address, i) => {
    const driver = drivers[address];
    if (driver === undefined) {
      refusals.push(`hostdevs[${i}]: there is no PCI device ${address} on the host (lspci -D lists the addresses); correct the address`);
    } else if (vfioDevices && !vfioDevices.includes(address)) {
      refusals.push(
        `hostdevs[${i}]: ${address} is not one of the devices the stack's VfioBinding puts on vfio-pci (${vfioDevices.join(", ") || "none"}), ` +
          `so nothing keeps the host's drivers off it at boot. Add it to the binding's selection (vfio-host:vfio in a host stack), or remove it from hostdevs`,
      );
    } else if (driver !== "vfio-pci") {
      if (vfioDevices) awaitingBoot.push(address);
      else {
        refusals.push(
          `hostdevs[${i}]: ${address} is ${driver ? `driven by ${driver}` : "not bound to any driver"} on the host, not vfio-pci, so the guest cannot own it. ` +
            `Declare a VfioBinding (or VfioHost) whose selection includes it, e.g. vfio: { devices: ["${address}"] }, ` +
            `and give this domain its planned addresses as vfioDevices (a host stack does); or remove ${address} from hostdevs`,
        );
      }
    }
  });
  return { refusals, awaitingBoot };
}

async function readDomainFacts(host: RemoteHost, spec: DomainSpec): Promise<{ facts: DomainHostFacts; drivers: PciDrivers }> {
  // osinfo-query is slow and only needed for a short id such as "debian12".
  const osinfo = spec.osVariant !== "generic" && !/^https?:/.test(spec.osVariant);
  const args = [spec.name, ...spec.disks.map((d) => `vol:${d.pool}/${d.volume}`), ...spec.hostdevs.map((a) => `pci:${a}`)];
  const s = await readSections(host, { ...snippets, osinfo: osinfo ? "osinfo-query os --fields=short-id,id" : ":" }, { args });
  const existing =
    s.xml.trim() === ""
      ? undefined
      : { definition: parseDomainXml(s.xml), autostart: parseVirshFields(s.info).Autostart === "enable", state: s.state.trim() };
  return {
    facts: {
      kvm: s.kvm.trim() === "yes",
      volumes: parseVolumesSection(s.volumes),
      firmware: spec.boot === "uefi" ? explicitFirmware(s.domcapabilities, s.ovmf.split("\n")) : undefined,
      osinfoIds: osinfo && s.osinfo.trim() !== "" ? parseOsinfoQuery(s.osinfo) : undefined,
      existing,
    },
    drivers: parsePciDrivers(s.pci),
  };
}

const shown = (value: unknown) => (typeof value === "string" || typeof value === "number" ? String(value) : JSON.stringify(value));

/** One line per changed field, saying when the running guest only gets it at a restart. */
export function describeFieldChange(change: FieldChange): string {
  const restart = change.needsRestart ? " (the running guest gets this at its next start: it is restarted)" : "";
  return `${change.field}: ${shown(change.from)} -> ${shown(change.to)}${restart}`;
}

/** A plan, unless something this update does first is missing (`blocked`): then apply fails with its problem. */
type LibvirtDomainPlan = { readonly plan?: DomainPlan; readonly blocked: readonly { readonly problem: string; readonly change: string }[] };

export const libvirtDomainProvider = hostResourceProvider<DomainSpec, LibvirtDomainPlan, DomainState>({
  schema: domainResourceSchema,
  identity: (spec) => `domain/${spec.name}`,
  replaceOnChange: ["name"],
  async plan(host, spec, state, previous, stack) {
    const { facts, drivers } = await readDomainFacts(host, spec);
    const { refusals, awaitingBoot } = hostdevProblems(spec.hostdevs, drivers, spec.vfioDevices);
    if (refusals.length > 0) throw new InputError("hostdevs", `LibvirtDomain ${spec.name}:\n- ${refusals.join("\n- ")}`);
    const blocked = [];
    if (awaitingBoot.length > 0) {
      blocked.push({
        problem: `LibvirtDomain ${spec.name}: ${awaitingBoot.join(", ")} still not on vfio-pci; the stack's reboot should have put ${awaitingBoot.length === 1 ? "it" : "them"} there (see its verification)`,
        change: `pass ${awaitingBoot.join(", ")} through once the stack's reboot has put ${awaitingBoot.length === 1 ? "it" : "them"} on vfio-pci`,
      });
    }
    const found = facts.existing?.definition.uuid;
    const recorded = state ?? (found && namedBefore(previous, spec.name) ? { uuid: found } : undefined);
    const missing = spec.disks.filter((d) => !facts.volumes.some((v) => v.pool === d.pool && v.name === d.volume)).map((d) => `${d.pool}/${d.volume}`);
    try {
      return { plan: planDomain(spec, facts, recorded, stackUuid(stack, "domain", spec.name)), blocked };
    } catch (err) {
      // At preview the volumes may be ones this update imports first; create fails with the problem.
      if (missing.length === 0) throw err;
      return { blocked: [...blocked, { problem: (err as Error).message, change: `define domain ${spec.name} once its Volumes have imported ${missing.join(", ")}` }] };
    }
  },
  describe: (p) => [...p.blocked.map((b) => b.change), ...(p.plan ? [...p.plan.changes.map(describeFieldChange), ...p.plan.steps.map((s) => s.describe)] : [])],
  async apply(host, p, spec) {
    if (!p.plan || p.blocked.length > 0) throw new Error(p.blocked.map((b) => b.problem).join("\n"));
    for (const step of p.plan.steps) await runStep(host, step);
    return { uuid: (await host.run(virsh("domuuid", "--domain", spec.name))).stdout.trim() };
  },
  async revert(host, spec, state) {
    const { facts } = await readDomainFacts(host, spec);
    for (const step of planDomainDelete(spec.name, facts.existing, state, spec.shutdownTimeoutSeconds)) {
      try {
        await runStep(host, step);
      } catch (err) {
        if (!(err instanceof WaitTimeoutError)) throw err;
        // The guest ignored the ACPI request (no OS, or one that does not listen): power it off.
        console.error(`${host.label}: domain ${spec.name} was still running ${spec.shutdownTimeoutSeconds} s after virsh shutdown; forcing it off (virsh destroy)`);
        await host.exec(virsh("destroy", "--domain", spec.name));
        const now = (await host.run(virsh("domstate", "--domain", spec.name))).stdout.trim();
        if (now !== "shut off") throw new Error(`domain ${spec.name} is still ${now} after virsh destroy`, { cause: err });
      }
    }
  },
});

export type LibvirtDomainArgs = { [K in keyof DomainInputs]: pulumi.Input<DomainInputs[K]> } & { connection: pulumi.Input<ConnectionInput> };

export class LibvirtDomain extends HostResource {
  declare readonly name: pulumi.Output<string>;
  declare readonly state: pulumi.Output<DomainState>;
  /** The domain's UUID on its host. */
  readonly uuid: pulumi.Output<string>;

  constructor(name: string, args: LibvirtDomainArgs, opts?: pulumi.CustomResourceOptions) {
    super("LibvirtDomain", name, args, opts);
    this.uuid = this.state.apply((s) => s.uuid);
  }
}
