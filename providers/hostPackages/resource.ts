// HostPackages: packages installed, services enabled and running, kernel modules loaded at boot and
// now. It stands in for @pulumi/command (whose plugin cannot be built here) with a declarative
// shape: a second `pulumi up` runs nothing, and delete gives back only what it changed.
import * as pulumi from "@pulumi/pulumi";
import { backupText } from "../hostFile";
import { HostResource, hostResourceProvider, InputError, type StackOnHost } from "../hostResource";
import { runStep } from "../hostStep";
import { moduleLineSyntax } from "../kernel/modules";
import { ConnectionInput } from "../ssh/connection";
import { BACKUP_ROOT } from "../hostRecords";
import { RemoteCommandError, RemoteHost } from "../ssh/host";
import { revertTokenText } from "../text/tokenList";
import { readHostPackagesFacts } from "./facts";
import {
  describeHostPackagesPlan,
  HostPackagesInputs,
  HostPackagesPlan,
  HostPackagesRefusal,
  HostPackagesState,
  MODULES_FILE,
  MODULES_FILE_HEADER,
  planHostPackages,
  planHostPackagesRevert,
  revertModulesFile,
  serviceRecordPath,
} from "./plan";

async function plan(host: RemoteHost, inputs: HostPackagesInputs, state: HostPackagesState | undefined, stack: StackOnHost): Promise<HostPackagesPlan> {
  const facts = await readHostPackagesFacts(host, inputs);
  // Without a record of the modules file in the state, the backup says what an earlier run wrote.
  const unrecorded = facts.init && inputs.modules.length > 0 && state?.modulesFile === undefined;
  const backup = unrecorded ? await host.readBackup(MODULES_FILE[facts.init!]) : undefined;
  try {
    return planHostPackages(inputs, { ...facts, modulesFileBackup: backup === "absent" ? null : backupText(backup) }, state, stack);
  } catch (err) {
    if (err instanceof HostPackagesRefusal) throw new InputError(err.key, err.message);
    throw err;
  }
}

async function install(host: RemoteHost, planned: HostPackagesPlan): Promise<void> {
  for (const step of planned.install) {
    try {
      await runStep(host, step);
    } catch (err) {
      // Package lists a few weeks old name versions the mirror no longer has: refresh them once.
      if (planned.manager !== "apt" || !(err instanceof RemoteCommandError) || step !== planned.install.at(-1)) throw err;
      console.error(`${host.label}: apt-get install failed; running apt-get update and trying once more`);
      await host.run(["apt-get", "update"], { timeoutMs: step.timeoutMs });
      await runStep(host, step);
    }
  }
}

const removeServiceRecords = async (host: RemoteHost, paths: readonly string[]) => {
  if (paths.length > 0) await host.run(["rm", "-f", "--", ...paths]);
};

export const hostPackagesProvider = hostResourceProvider<HostPackagesInputs, HostPackagesPlan, HostPackagesState>({
  schema: HostPackagesInputs,
  identity: () => "packages",
  plan: (host, inputs, state, _previous, stack) => plan(host, inputs, state, stack),
  describe: describeHostPackagesPlan,

  async apply(host, planned, inputs) {
    if (planned.install.length > 0) {
      await install(host, planned);
      // Installing may enable services and load modules itself: plan the rest against the host as it is now.
      const previous = planned.previous;
      planned = await plan(host, inputs, previous, planned.stack);
      if (planned.install.length > 0) {
        throw new Error(
          `${host.label}: after installing, the package manager does not list ${planned.missing.join(", ")} as installed; ` +
            "a virtual package is satisfied by another one (apt-cache showpkg NAME): write the name of the package that provides it",
        );
      }
    }
    const file = planned.file;
    if (file) {
      await host.backupOnce(file.path);
      if (file.after === undefined) await host.restoreBackup(file.path);
      else await host.writeFileAtomic(file.path, file.after);
    }
    for (const record of planned.serviceRecords.write) await host.writeFileAtomic(record.path, record.content);
    for (const step of planned.steps) await runStep(host, step);
    await removeServiceRecords(host, planned.serviceRecords.remove);
    return planned.state;
  },

  async revert(host, _inputs, state) {
    for (const step of planHostPackagesRevert(state)) await runStep(host, step);
    await removeServiceRecords(host, state.enabledServices.map(serviceRecordPath));
    const recorded = state.modulesFile;
    if (!recorded) return;
    const current = (await host.readFile(recorded.path))?.toString("utf8");
    if (current === undefined) return;
    const reverted = revertModulesFile(current, recorded);
    // Modules stay loaded: unloading one something uses would fail or break it.
    if (reverted !== undefined) return host.revertFile(recorded.path, reverted);
    // A file we created goes again, but only when nothing but our header is left in it.
    const rest = revertTokenText(current, recorded.owned, moduleLineSyntax);
    if (rest === MODULES_FILE_HEADER) {
      await host.restoreBackup(recorded.path);
      return;
    }
    await host.writeFileAtomic(recorded.path, rest);
    console.error(
      `${host.label}: ${recorded.path} NOT removed: lines were added to it by hand, so destroy took out only its own modules ` +
        `and left the file in place. It did not exist before vfio-host created it; to remove it by hand: ` +
        `rm ${recorded.path} ${BACKUP_ROOT}${recorded.path}.absent`,
    );
  },
});

export interface HostPackagesArgs {
  connection: pulumi.Input<ConnectionInput>;
  /** Debian/Ubuntu or Alpine package names, e.g. ["libvirt-daemon-system", "qemu-system-x86", "ovmf"]. Never removed. */
  packages?: pulumi.Input<pulumi.Input<string>[]>;
  /** Enabled at boot and started, e.g. ["libvirtd"]; delete disables those that were not enabled before. */
  services?: pulumi.Input<pulumi.Input<string>[]>;
  /** Kernel modules loaded at boot and now, e.g. ["tun"]. */
  modules?: pulumi.Input<pulumi.Input<string>[]>;
}

export class HostPackages extends HostResource {
  declare readonly state: pulumi.Output<HostPackagesState>;

  constructor(name: string, args: HostPackagesArgs, opts?: pulumi.CustomResourceOptions) {
    super("HostPackages", name, args, opts);
  }
}
