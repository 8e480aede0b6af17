// HostPackages, pure: what to install, which services to enable and start, which kernel modules
// to load at boot (one line each in a modules file) and now. Packages are never removed: removing
// libvirt would take the user's guests with it. Services and module lines are given back only when
// this resource added them (its state records which, and so does the host, for a run killed before
// its state was recorded: a record under OWNED_ROOT for a service, the backup for the modules file).
import { z } from "zod";
import type { HostStep } from "../hostStep";
import { expected } from "../inputErrors";
import { moduleLineSyntax, normalizeModuleName } from "../kernel/modules";
import { OWNED_ROOT } from "../hostRecords";
import { planTokens, revertTokenText, TokenOwnership } from "../text/tokenList";

// No leading "-" (they go into argv) and no glob characters (dpkg-query -W takes patterns).
const packageName = z
  .string(expected("a package name", '"libvirt-daemon-system"'))
  .regex(/^[a-z0-9][a-z0-9+._-]*$/, expected("a package name (lower-case letters, digits, + . _ -)", '"libvirt-daemon-system"'));
const serviceName = z
  .string(expected("a service name", '"libvirtd"'))
  .regex(/^[A-Za-z0-9][A-Za-z0-9@._:-]*$/, expected("a service name (letters, digits, @ . _ : -)", '"libvirtd"'));
const moduleName = z
  .string(expected("a kernel module name", '"tun"'))
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, expected("a kernel module name (letters, digits, _ -)", '"tun"'));

export const HostPackagesInputs = z.strictObject({
  packages: z.array(packageName).default([]),
  /** Enabled at boot and started now (systemd units or OpenRC services). */
  services: z.array(serviceName).default([]),
  /** Loaded at boot (modules-load.d(5), or /etc/modules with OpenRC) and loaded now with modprobe. */
  modules: z.array(moduleName).default([]),
});
export type HostPackagesInputs = z.output<typeof HostPackagesInputs>;

export type PackageManager = "apt" | "apk";
export type InitSystem = "systemd" | "openrc";

export interface ServiceFact {
  readonly exists: boolean;
  readonly masked: boolean;
  /** Starts at boot (or cannot be enabled at all, e.g. a static or socket-activated unit). */
  readonly enabled: boolean;
  /** Running, or waiting on a socket that is. */
  readonly running: boolean;
}

export type ModuleFact = "loaded" | "builtin" | "available" | "unknown";

export interface HostPackagesFacts {
  readonly manager?: PackageManager;
  readonly init?: InitSystem;
  readonly kernelRelease: string;
  /** Those of the requested packages that are installed. */
  readonly installed: readonly string[];
  /** apt has package lists (a fresh image may have none, and then installs nothing). */
  readonly aptListsPresent: boolean;
  readonly services: Readonly<Record<string, ServiceFact>>;
  readonly modules: Readonly<Record<string, ModuleFact>>;
  /** The modules file of `init`, or undefined when it does not exist. */
  readonly modulesFile?: string;
  /**
   * The modules file before vfio-host first wrote it (its backup): null when it did not exist,
   * undefined without a backup. Read only when the state does not say what this resource wrote.
   */
  readonly modulesFileBackup?: string | null;
  /** The stack that recorded, before enabling it, that it enables each requested service. */
  readonly serviceRecords: Readonly<Record<string, string>>;
}

export interface HostPackagesState {
  readonly init?: InitSystem;
  /** Services that were not enabled before this resource enabled them: delete disables them again. */
  readonly enabledServices: readonly string[];
  readonly modulesFile?: { readonly path: string; readonly owned: TokenOwnership; readonly created: boolean };
}

export interface FileEdit {
  readonly path: string;
  readonly before: string | undefined;
  /** undefined: the file goes (this resource created it and no module is left in it). */
  readonly after: string | undefined;
  readonly changes: readonly string[];
}

export interface HostPackagesPlan {
  readonly manager?: PackageManager;
  /** Requested packages the host does not have. */
  readonly missing: readonly string[];
  /** Installation first: what follows is planned again once it is done (see the resource). */
  readonly install: readonly HostStep[];
  readonly file?: FileEdit;
  /** modprobe, then services. */
  readonly steps: readonly HostStep[];
  /** Written before `steps` (the services they enable, recorded as this stack's) and removed after them (those they disable). */
  readonly serviceRecords: { readonly write: readonly ServiceRecord[]; readonly remove: readonly string[] };
  readonly state: HostPackagesState;
  /** The state this plan started from, to plan again after installing. */
  readonly previous?: HostPackagesState;
  /** The stack it was planned for (StackOnHost), likewise. */
  readonly stack?: string;
}

/** systemd reads every file in /etc/modules-load.d; OpenRC's `modules` service reads /etc/modules. */
export const MODULES_FILE: Record<InitSystem, string> = {
  systemd: "/etc/modules-load.d/vfio-host.conf",
  openrc: "/etc/modules",
};

export interface ServiceRecord {
  readonly path: string;
  readonly content: string;
}

/** The record that says which stack enabled `service` on this host. */
export const serviceRecordPath = (service: string) => `${OWNED_ROOT}/service/${service}`;

export const MODULES_FILE_HEADER = "# Kernel modules loaded at boot, written by vfio-host (HostPackages); see modules-load.d(5).\n";

const INSTALL_TIMEOUT_MS = 30 * 60_000;

const installSteps: Record<PackageManager, (packages: string[], listsPresent: boolean) => HostStep[]> = {
  apt: (packages, listsPresent) => [
    ...(listsPresent ? [] : [{ describe: "apt-get update (the host has no package lists yet)", argv: ["apt-get", "update"], timeoutMs: INSTALL_TIMEOUT_MS }]),
    {
      describe: `install ${packages.join(" ")} (apt-get install --no-install-recommends)`,
      // Wait for another apt rather than fail on its lock; keep changed config files without asking.
      argv: [
        "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "--no-install-recommends",
        "-o", "DPkg::Lock::Timeout=300", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        ...packages,
      ],
      timeoutMs: INSTALL_TIMEOUT_MS,
    },
  ],
  apk: (packages) => [{ describe: `install ${packages.join(" ")} (apk add)`, argv: ["apk", "add", ...packages], timeoutMs: INSTALL_TIMEOUT_MS }],
};

const serviceSteps = {
  systemd: {
    enable: (s: string) => ({ describe: `enable and start ${s} (systemctl enable --now)`, argv: ["systemctl", "enable", "--now", "--", s] }),
    start: (s: string) => ({ describe: `start ${s} (systemctl start)`, argv: ["systemctl", "start", "--", s] }),
    disable: (s: string) => [{ describe: `disable and stop ${s} (systemctl disable --now)`, argv: ["systemctl", "disable", "--now", "--", s] }],
  },
  openrc: {
    enable: (s: string) => ({ describe: `start ${s} at boot (rc-update add ${s} default)`, argv: ["rc-update", "add", s, "default"] }),
    start: (s: string) => ({ describe: `start ${s} (rc-service ${s} start)`, argv: ["rc-service", s, "start"] }),
    disable: (s: string) => [
      { describe: `do not start ${s} at boot (rc-update del ${s} default)`, argv: ["rc-update", "del", s, "default"] },
      { describe: `stop ${s} (rc-service ${s} stop)`, argv: ["rc-service", s, "stop"] },
    ],
  },
} satisfies Record<InitSystem, unknown>;

/** Thrown for a declaration the host cannot satisfy; `key` is the input to fix. */
export class HostPackagesRefusal extends Error {
  constructor(
    readonly key: keyof HostPackagesInputs,
    message: string,
  ) {
    super(message);
  }
}

const unique = <T>(list: readonly T[]) => [...new Set(list)];

function requireManager(facts: HostPackagesFacts): PackageManager {
  if (facts.manager) return facts.manager;
  throw new HostPackagesRefusal("packages", "the host has neither apt-get/dpkg-query (Debian, Ubuntu) nor apk (Alpine); install the packages by hand and leave packages empty");
}

function requireInit(facts: HostPackagesFacts, key: "services" | "modules"): InitSystem {
  if (facts.init) return facts.init;
  throw new HostPackagesRefusal(key, `the host runs neither systemd nor OpenRC, so vfio-host cannot manage ${key} on it; leave ${key} empty`);
}

const namesModules = (text: string) => moduleLineSyntax.parse(text).tokens.some((line) => moduleLineSyntax.key(line) !== undefined);

/**
 * The modules file with the declared modules in it, our earlier lines reverted first. A file this
 * resource created starts with a header and goes again once no module is left in it. Without a
 * record of them (a run killed before its state was recorded), our earlier lines are recognised
 * against the backup (`backup`, null: the file did not exist before, as the header-only file).
 */
export function planModulesFile(
  path: string,
  text: string | undefined,
  modules: readonly string[],
  previous: HostPackagesState["modulesFile"],
  backup?: string | null,
): { edit: FileEdit; owned: TokenOwnership; created: boolean } {
  const recorded = previous?.path === path ? previous : undefined;
  const created = text === undefined || (recorded ? recorded.created : backup === null);
  const original = recorded ? undefined : backup === null ? MODULES_FILE_HEADER : backup;
  const plan = planTokens(text ?? MODULES_FILE_HEADER, { ensure: modules, previouslyOwned: recorded?.owned, backup: original }, moduleLineSyntax);
  const after = created && !namesModules(plan.text) ? undefined : plan.text;
  const changes = [...plan.changes.map((c) => `${path}: ${c}`), ...(after === undefined && text !== undefined ? [`remove ${path}`] : [])];
  return { edit: { path, before: text, after, changes }, owned: plan.owned, created };
}

/** The modules file without our lines; undefined when the file should go (we created it and no module is left in it). */
export function revertModulesFile(text: string, recorded: NonNullable<HostPackagesState["modulesFile"]>): string | undefined {
  const reverted = revertTokenText(text, recorded.owned, moduleLineSyntax);
  return recorded.created && !namesModules(reverted) ? undefined : reverted;
}

/**
 * Steps that make the host match `inputs`; none when it does (a second run plans nothing). `stack`
 * (StackOnHost) is what the records of the services it enables say; undefined: none are written.
 */
export function planHostPackages(
  inputs: HostPackagesInputs,
  facts: HostPackagesFacts,
  state: HostPackagesState | undefined,
  stack?: string,
): HostPackagesPlan {
  const packages = unique(inputs.packages);
  const services = unique(inputs.services);
  const modules = unique(inputs.modules.map(normalizeModuleName));

  const missing = packages.filter((p) => !facts.installed.includes(p));
  const install = missing.length > 0 ? installSteps[requireManager(facts)](missing, facts.aptListsPresent) : [];

  // Names the host does not know: fine while `install` may bring them, refused otherwise.
  const unknownModules: string[] = [];
  const unknownServices: string[] = [];
  const steps: HostStep[] = [];
  let file: FileEdit | undefined;
  let modulesFile = state?.modulesFile;
  if (modules.length > 0 || state?.modulesFile) {
    const init = requireInit(facts, "modules");
    const planned = planModulesFile(MODULES_FILE[init], facts.modulesFile, modules, state?.modulesFile, facts.modulesFileBackup);
    if (planned.edit.after !== planned.edit.before) file = planned.edit;
    modulesFile = planned.edit.after !== undefined && planned.owned.added.length > 0 ? { path: planned.edit.path, owned: planned.owned, created: planned.created } : undefined;
    for (const m of modules) {
      const fact = facts.modules[m] ?? "unknown";
      if (fact === "unknown") unknownModules.push(m);
      // Unloading is never planned: something may be using the module already.
      if (fact !== "loaded" && fact !== "builtin") steps.push({ describe: `load kernel module ${m} (modprobe)`, argv: ["modprobe", "--", m] });
    }
  }

  const enabledServices = (state?.enabledServices ?? []).filter((s) => services.includes(s));
  const dropped = (state?.enabledServices ?? []).filter((s) => !services.includes(s));
  const record: ServiceRecord[] = [];
  if (services.length > 0 || dropped.length > 0) {
    const init = requireInit(facts, "services");
    const how = serviceSteps[init];
    for (const s of services) {
      const fact = facts.services[s] ?? { exists: false, masked: false, enabled: false, running: false };
      if (fact.masked) {
        throw new HostPackagesRefusal("services", `${s} is masked on the host, so it cannot be started; unmask it (systemctl unmask ${s}) or take it out of services`);
      }
      if (!fact.exists) unknownServices.push(s);
      const ours = enabledServices.includes(s);
      if (!fact.enabled) {
        steps.push(how.enable(s));
        if (!ours) enabledServices.push(s);
        if (stack !== undefined) record.push({ path: serviceRecordPath(s), content: `${stack}\n` });
        // `systemctl enable --now` starts it too.
        if (init === "openrc" && !fact.running) steps.push(how.start(s));
      } else {
        // Enabled by a run of this stack that was killed before its state recorded it.
        if (!ours && stack !== undefined && facts.serviceRecords[s] === stack) enabledServices.push(s);
        if (!fact.running) steps.push(how.start(s));
      }
    }
    // Enabled by an earlier apply and no longer declared: given back as it was.
    for (const s of dropped) steps.push(...how.disable(s));
  }

  if (install.length === 0 && unknownModules.length > 0) {
    throw new HostPackagesRefusal(
      "modules",
      `the running kernel ${facts.kernelRelease} has no module ${unknownModules.join(", ")} (modinfo finds none); ` +
        `check the spelling (lsmod, ls /lib/modules/$(uname -r)/kernel), or add the package that ships it to packages`,
    );
  }
  if (install.length === 0 && unknownServices.length > 0) {
    throw new HostPackagesRefusal(
      "services",
      `the host has no service ${unknownServices.join(", ")}; check the spelling (systemctl list-unit-files, rc-service -l), ` +
        "or add the package that ships it to packages",
    );
  }

  return {
    manager: facts.manager,
    missing,
    install,
    file,
    steps,
    serviceRecords: { write: record, remove: dropped.map(serviceRecordPath) },
    state: { init: facts.init, enabledServices, modulesFile },
    previous: state,
    stack,
  };
}

/** One line per change, for `pulumi preview --diff`. */
export function describeHostPackagesPlan(plan: HostPackagesPlan): string[] {
  return [...plan.install.map((s) => s.describe), ...(plan.file?.changes ?? []), ...plan.steps.map((s) => s.describe)];
}

/** What delete gives back: the services this resource enabled are disabled again. */
export function planHostPackagesRevert(state: HostPackagesState): HostStep[] {
  if (!state.init) return [];
  return state.enabledServices.flatMap((s) => serviceSteps[state.init!].disable(s));
}
