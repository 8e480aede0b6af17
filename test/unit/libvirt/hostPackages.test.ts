import fc from "fast-check";
import { parseApkInfo, parseDpkgQuery, parseModuleFacts, parseOpenrcServices, parseServiceRecords, parseSystemdServices } from "../../../providers/hostPackages/facts";
import {
  describeHostPackagesPlan,
  HostPackagesFacts,
  HostPackagesInputs,
  HostPackagesPlan,
  HostPackagesRefusal,
  MODULES_FILE_HEADER,
  planHostPackages,
  planHostPackagesRevert,
  planModulesFile,
  revertModulesFile,
  serviceRecordPath,
} from "../../../providers/hostPackages/plan";

const MODULES_LOAD = "/etc/modules-load.d/vfio-host.conf";
const inputs = HostPackagesInputs.parse({
  packages: ["libvirt-daemon-system", "qemu-system-x86", "ovmf"],
  services: ["libvirtd"],
  modules: ["tun"],
});
const running = { exists: true, masked: false, enabled: true, running: true };

// A Debian 12 host after `apt install libvirt-daemon-system qemu-system-x86 ovmf`.
const debian: HostPackagesFacts = {
  manager: "apt",
  init: "systemd",
  kernelRelease: "6.1.0-26-amd64",
  installed: ["libvirt-daemon-system", "qemu-system-x86", "ovmf"],
  aptListsPresent: true,
  services: { libvirtd: running },
  modules: { tun: "available" },
  modulesFile: undefined,
  serviceRecords: {},
};
const STACK = "vfio-host/lab@192.0.2.10";

/**
 * The host as `apply` leaves it: what the plan installs, writes, loads and enables is there, with
 * the backup of the modules file and the records of the services it enabled.
 */
function afterApply(facts: HostPackagesFacts, wanted: HostPackagesInputs, plan: HostPackagesPlan): HostPackagesFacts {
  const services = { ...facts.services };
  for (const s of wanted.services) services[s] = running;
  for (const s of plan.previous?.enabledServices ?? []) if (!wanted.services.includes(s)) services[s] = { ...running, enabled: false, running: false };
  const modules = Object.fromEntries(Object.entries(facts.modules).map(([m, f]) => [m, wanted.modules.includes(m) && f === "available" ? "loaded" : f] as const));
  const modulesFile = plan.file ? plan.file.after : facts.modulesFile;
  const modulesFileBackup = plan.file && facts.modulesFileBackup === undefined ? (facts.modulesFile ?? null) : facts.modulesFileBackup;
  const serviceRecords = { ...facts.serviceRecords };
  for (const r of plan.serviceRecords.write) serviceRecords[r.path.split("/").pop()!] = r.content.trim();
  return { ...facts, installed: [...facts.installed, ...plan.missing], services, modules, modulesFile, modulesFileBackup, serviceRecords };
}

describe("facts", () => {
  it("counts only fully installed Debian packages (ii), not removed ones that left config files (rc)", () => {
    expect(parseDpkgQuery("libvirt-daemon-system\tii \novmf\trc \nqemu-utils\tiU \n")).toEqual(["libvirt-daemon-system"]);
    expect(parseApkInfo("libvirt-daemon\nqemu-system-x86_64\n")).toEqual(["libvirt-daemon", "qemu-system-x86_64"]);
  });

  it("reads systemd units, a socket-activated idle service counting as running", () => {
    const text = [
      "unit=libvirtd",
      "LoadState=loaded",
      "ActiveState=inactive",
      "UnitFileState=enabled",
      "trigger=active",
      "trigger=active",
      "unit=virtlogd",
      "LoadState=loaded",
      "ActiveState=inactive",
      "UnitFileState=indirect",
      "unit=nosuch",
      "LoadState=not-found",
      "ActiveState=inactive",
      "UnitFileState=",
      "unit=hidden",
      "LoadState=masked",
      "ActiveState=inactive",
      "UnitFileState=masked",
      "",
    ].join("\n");
    expect(parseSystemdServices(text)).toEqual({
      libvirtd: { exists: true, masked: false, enabled: true, running: true },
      virtlogd: { exists: true, masked: false, enabled: true, running: false },
      nosuch: { exists: false, masked: false, enabled: false, running: false },
      hidden: { exists: true, masked: true, enabled: true, running: false },
    });
  });

  it("reads OpenRC services and module states", () => {
    expect(parseOpenrcServices("libvirtd 1 0 0\nsshd 1 1 1\n")).toEqual({
      libvirtd: { exists: true, masked: false, enabled: false, running: false },
      sshd: running,
    });
    const modinfo = "tun\t/lib/modules/6.1.0-26-amd64/kernel/drivers/net/tun.ko\t\nvfio_pci\t/lib/x.ko\t1\nloop\t(builtin)\t1\nunix\t\t1\ntunn\t\t\n";
    expect(parseModuleFacts(modinfo, "vfio_pci\nkvm\n")).toEqual({ tun: "available", vfio_pci: "loaded", loop: "builtin", unix: "builtin", tunn: "unknown" });
    expect(parseServiceRecords(`libvirtd\t${STACK}\nlibvirt-guests\t\n`)).toEqual({ libvirtd: STACK });
  });
});

describe("planHostPackages", () => {
  it("on a host that has everything plans nothing", () => {
    const facts = { ...debian, modules: { tun: "loaded" as const }, modulesFile: `${MODULES_FILE_HEADER}tun\n` };
    expect(describeHostPackagesPlan(planHostPackages(inputs, facts, undefined))).toEqual([]);
  });

  it("installs what is missing without recommends and without questions, then writes and loads the module", () => {
    const plan = planHostPackages(inputs, { ...debian, installed: ["ovmf"] }, undefined);
    expect(plan.install.map((s) => s.argv)).toEqual([
      [
        "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "--no-install-recommends",
        "-o", "DPkg::Lock::Timeout=300", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        "libvirt-daemon-system", "qemu-system-x86",
      ],
    ]);
    expect(plan.file).toEqual({ path: MODULES_LOAD, before: undefined, after: `${MODULES_FILE_HEADER}tun\n`, changes: [`${MODULES_LOAD}: + tun`] });
    expect(describeHostPackagesPlan(plan)).toEqual([
      "install libvirt-daemon-system qemu-system-x86 (apt-get install --no-install-recommends)",
      `${MODULES_LOAD}: + tun`,
      "load kernel module tun (modprobe)",
    ]);
    expect(plan.state).toEqual({ init: "systemd", enabledServices: [], modulesFile: { path: MODULES_LOAD, owned: { added: ["tun"], replaced: [], removed: [] }, created: true } });
  });

  it("fetches package lists first on a host that has none", () => {
    const plan = planHostPackages(inputs, { ...debian, installed: [], aptListsPresent: false }, undefined);
    expect(plan.install.map((s) => s.argv.slice(0, 4))).toEqual([["apt-get", "update"], ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install"]]);
  });

  it("on Alpine uses apk, rc-update and rc-service, and /etc/modules", () => {
    const alpine: HostPackagesFacts = {
      ...debian,
      manager: "apk",
      init: "openrc",
      installed: [],
      services: { libvirtd: { exists: true, masked: false, enabled: false, running: false } },
      modulesFile: "af_packet\nipv6\n",
    };
    const plan = planHostPackages(HostPackagesInputs.parse({ packages: ["libvirt-daemon"], services: ["libvirtd"], modules: ["tun"] }), alpine, undefined);
    expect([...plan.install, ...plan.steps].map((s) => s.argv)).toEqual([
      ["apk", "add", "libvirt-daemon"],
      ["modprobe", "--", "tun"],
      ["rc-update", "add", "libvirtd", "default"],
      ["rc-service", "libvirtd", "start"],
    ]);
    expect(plan.file?.after).toBe("af_packet\nipv6\ntun\n");
    expect(plan.state.enabledServices).toEqual(["libvirtd"]);
    expect(planHostPackagesRevert(plan.state).map((s) => s.argv)).toEqual([
      ["rc-update", "del", "libvirtd", "default"],
      ["rc-service", "libvirtd", "stop"],
    ]);
  });

  it("enables a disabled service and records it; only starts an enabled one and leaves it off the record", () => {
    const facts = {
      ...debian,
      services: { libvirtd: { ...running, enabled: false, running: false }, "virtlogd.socket": { ...running, running: false } },
    };
    const plan = planHostPackages({ ...inputs, services: ["libvirtd", "virtlogd.socket"] }, facts, undefined);
    expect(plan.steps.slice(1).map((s) => s.argv)).toEqual([
      ["systemctl", "enable", "--now", "--", "libvirtd"],
      ["systemctl", "start", "--", "virtlogd.socket"],
    ]);
    expect(plan.state.enabledServices).toEqual(["libvirtd"]);
    expect(planHostPackagesRevert(plan.state).map((s) => s.argv)).toEqual([["systemctl", "disable", "--now", "--", "libvirtd"]]);
  });

  it("records the services it enables before enabling them, and a later plan without state takes them as its own", () => {
    const disabled = { ...debian, services: { libvirtd: { ...running, enabled: false, running: false } } };
    const first = planHostPackages(inputs, disabled, undefined, STACK);
    expect(first.serviceRecords.write).toEqual([{ path: "/var/lib/vfio-host/owned/service/libvirtd", content: `${STACK}\n` }]);
    expect(serviceRecordPath("libvirtd")).toBe(first.serviceRecords.write[0].path);
    // The run was killed after the enable, before Pulumi recorded the state: the record says whose it is.
    const host = afterApply(disabled, inputs, first);
    const recovered = planHostPackages(inputs, host, undefined, STACK);
    expect(recovered.state.enabledServices).toEqual(["libvirtd"]);
    expect(describeHostPackagesPlan(recovered)).toEqual([]);
    expect(planHostPackagesRevert(recovered.state).map((s) => s.argv)).toEqual([["systemctl", "disable", "--now", "--", "libvirtd"]]);
    // Another stack's record, or none: enabled by someone else, left enabled.
    expect(planHostPackages(inputs, host, undefined, "vfio-host/other@192.0.2.10").state.enabledServices).toEqual([]);
    expect(planHostPackages(inputs, { ...host, serviceRecords: {} }, undefined, STACK).state.enabledServices).toEqual([]);
    // Given back once no longer declared: disabled, and its record removed after that.
    const fewer = planHostPackages(HostPackagesInputs.parse({ packages: inputs.packages, modules: ["tun"] }), host, recovered.state, STACK);
    expect(fewer.steps.map((s) => s.argv)).toEqual([["systemctl", "disable", "--now", "--", "libvirtd"]]);
    expect(fewer.serviceRecords).toEqual({ write: [], remove: ["/var/lib/vfio-host/owned/service/libvirtd"] });
  });

  it("after a run killed once its apply was done, plans nothing and takes what that run did as its own, whatever the host had before", () => {
    const serviceFact = fc.record({ exists: fc.constant(true), masked: fc.constant(false), enabled: fc.boolean(), running: fc.boolean() });
    fc.assert(
      fc.property(
        serviceFact,
        fc.constantFrom("available" as const, "loaded" as const),
        fc.option(fc.constantFrom("", "tun\n", "# mine\nloop\n", "kvm", "tun=1\n"), { nil: undefined }),
        (libvirtd, tun, modulesFile) => {
          const facts = { ...debian, services: { libvirtd }, modules: { tun }, modulesFile };
          const first = planHostPackages(inputs, facts, undefined, STACK);
          const recovered = planHostPackages(inputs, afterApply(facts, inputs, first), undefined, STACK);
          expect(describeHostPackagesPlan(recovered)).toEqual([]);
          expect(recovered.state).toEqual(first.state);
        },
      ),
    );
  });

  it("refuses a masked service, an unknown one and an unknown module, naming the key and the fix", () => {
    const refusal = (facts: Partial<HostPackagesFacts>) => {
      try {
        planHostPackages(inputs, { ...debian, ...facts }, undefined);
      } catch (err) {
        return [(err as HostPackagesRefusal).key, (err as Error).message];
      }
      return undefined;
    };
    expect(refusal({ services: { libvirtd: { ...running, masked: true } } })).toEqual([
      "services",
      "libvirtd is masked on the host, so it cannot be started; unmask it (systemctl unmask libvirtd) or take it out of services",
    ]);
    expect(refusal({ services: {} })?.[0]).toBe("services");
    expect(refusal({ modules: { tun: "unknown" } })).toEqual([
      "modules",
      "the running kernel 6.1.0-26-amd64 has no module tun (modinfo finds none); check the spelling (lsmod, ls /lib/modules/$(uname -r)/kernel), " +
        "or add the package that ships it to packages",
    ]);
    // A package about to be installed may bring them: decided after the install (the resource plans again).
    expect(refusal({ installed: [], services: {}, modules: {} })).toBeUndefined();
    expect(refusal({ manager: undefined, installed: [] })?.[0]).toBe("packages");
  });

  it("writes the line of a built-in module but does not modprobe it", () => {
    const plan = planHostPackages(inputs, { ...debian, modules: { tun: "builtin" } }, undefined);
    expect(plan.steps).toEqual([]);
    expect(plan.file?.changes).toEqual([`${MODULES_LOAD}: + tun`]);
  });

  it("gives back a service and a module line once they are no longer declared", () => {
    const first = planHostPackages(inputs, { ...debian, services: { libvirtd: { ...running, enabled: false } } }, undefined);
    const host = afterApply(debian, inputs, first);
    const fewer = HostPackagesInputs.parse({ packages: inputs.packages });
    const second = planHostPackages(fewer, host, first.state);
    expect(describeHostPackagesPlan(second)).toEqual([`${MODULES_LOAD}: - tun`, `remove ${MODULES_LOAD}`, "disable and stop libvirtd (systemctl disable --now)"]);
    expect(second.file?.after).toBeUndefined();
    expect(second.state).toEqual({ init: "systemd", enabledServices: [], modulesFile: undefined });
  });

  it("plans nothing once its plan is applied, whatever the host had before", () => {
    const serviceFact = fc.record({ exists: fc.constant(true), masked: fc.constant(false), enabled: fc.boolean(), running: fc.boolean() });
    fc.assert(
      fc.property(
        fc.subarray(inputs.packages),
        serviceFact,
        fc.constantFrom("available" as const, "loaded" as const, "builtin" as const),
        fc.option(fc.constantFrom("", "tun\n", "# mine\nloop\n", "kvm"), { nil: undefined }),
        (installed, libvirtd, tun, modulesFile) => {
          const facts = { ...debian, installed, services: { libvirtd }, modules: { tun }, modulesFile };
          const first = planHostPackages(inputs, facts, undefined);
          const second = planHostPackages(inputs, afterApply(facts, inputs, first), first.state);
          expect(describeHostPackagesPlan(second)).toEqual([]);
          expect(second.state).toEqual(first.state);
        },
      ),
    );
  });
});

describe("the modules file", () => {
  const text = fc.array(fc.oneof(fc.constantFrom("tun", "loop", "# tun", "vfio-pci ids=10de:1c82", "", "  kvm"), fc.string()), { maxLength: 6 }).map((lines) => lines.join("\n"));
  const modules = fc.subarray(["tun", "loop", "vfio_pci", "kvm"]);

  it("gets its original bytes back on revert, whatever was in it", () => {
    fc.assert(
      fc.property(text, modules, (before, wanted) => {
        const { edit, owned, created } = planModulesFile(MODULES_LOAD, before, wanted, undefined);
        expect(created).toBe(false);
        expect(revertModulesFile(edit.after!, { path: MODULES_LOAD, owned, created })).toBe(before);
      }),
    );
  });

  it("is left as it is by a second plan with the first one's ownership", () => {
    fc.assert(
      fc.property(fc.option(text, { nil: undefined }), modules, (before, wanted) => {
        const first = planModulesFile(MODULES_LOAD, before, wanted, undefined);
        const again = planModulesFile(MODULES_LOAD, first.edit.after, wanted, { path: MODULES_LOAD, owned: first.owned, created: first.created });
        expect(again.edit.after).toBe(first.edit.after);
        expect(again.edit.changes).toEqual([]);
      }),
    );
  });

  it("goes again on revert when this resource created it", () => {
    const { edit, owned, created } = planModulesFile(MODULES_LOAD, undefined, ["tun"], undefined);
    expect(edit.after).toBe(`${MODULES_FILE_HEADER}tun\n`);
    expect(revertModulesFile(edit.after!, { path: MODULES_LOAD, owned, created })).toBeUndefined();
    // Someone added a module of their own meanwhile: the file stays, with their line.
    expect(revertModulesFile(`${edit.after}loop\n`, { path: MODULES_LOAD, owned, created })).toBe(`${MODULES_FILE_HEADER}loop\n`);
  });
});
