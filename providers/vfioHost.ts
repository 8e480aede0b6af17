// VfioHost: a whole passthrough host from one description, in boot order: the kernel command line,
// the vfio-pci binding, the initramfs that carries both, then one reboot (only when one of them
// changed) that proves vfio-pci claimed every selected device.
import * as pulumi from "@pulumi/pulumi";
import { InitramfsModules } from "./initramfsModules/resource";
import { KernelCmdline } from "./kernelCmdline/resource";
import { kernelArgKey } from "./kernelCmdline/kernelArgs";
import { HostReboot } from "./reboot/resource";
import { ConnectionInput } from "./ssh/connection";
import { VfioBinding, VfioBindingArgs } from "./vfioBinding/resource";

/** Arguments that turn an IOMMU on at boot (intel_iommu(7)/amd_iommu in kernel-parameters.txt). */
const IOMMU_ON = ["intel_iommu=on", "amd_iommu=on", "amd_iommu=force_isolation"];

export interface VfioHostArgs {
  connection: pulumi.Input<ConnectionInput>;
  kernelArgs: string[];
  removeKernelArgs?: string[];
  /** Boot-critical keys (root, init, rd.*, ...) that kernelArgs may set or removeKernelArgs take off. */
  acknowledgeBootCriticalArgs?: string[];
  bootBackend?: "auto" | "grub" | "extlinux";
  extlinuxModules?: string[];
  vfio: VfioBindingArgs["selection"];
  /** "never": write everything but leave the reboot (and its verification) to the user. */
  reboot?: "auto" | "never";
  /** How long the reboot may take (HostReboot's timeoutSeconds). */
  rebootTimeoutSeconds?: number;
}

export class VfioHost extends pulumi.ComponentResource {
  /** PCI addresses handed to vfio-pci, their ids and IOMMU groups. */
  readonly boundDevices: pulumi.Output<string[]>;
  readonly boundIds: pulumi.Output<string[]>;
  readonly iommuGroups: pulumi.Output<number[]>;
  /** The boot the verification ran on, or undefined with reboot "never". */
  readonly verifiedBootId: pulumi.Output<string | undefined>;
  /** Each bound device's driver after that boot. */
  readonly drivers: pulumi.Output<Record<string, string> | undefined>;
  readonly plannedChanges: pulumi.Output<string[]>;
  readonly bootResources: pulumi.Resource[];

  constructor(name: string, args: VfioHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("vfio-host:index:VfioHost", name, {}, opts);
    const parent = { parent: this };
    const connection = args.connection;

    const cmdline = new KernelCmdline(`${name}-cmdline`, {
      connection,
      args: args.kernelArgs,
      remove: args.removeKernelArgs,
      acknowledgeBootCritical: args.acknowledgeBootCriticalArgs,
      backend: args.bootBackend,
      modules: args.extlinuxModules,
    }, parent);
    const binding = new VfioBinding(`${name}-vfio`, {
      connection,
      selection: args.vfio,
      iommuAtNextBoot: args.kernelArgs.some((a) => IOMMU_ON.includes(a) || kernelArgKey(a) === "vfio_pci.ids"),
    }, parent);
    const initramfs = new InitramfsModules(`${name}-initramfs`, {
      connection,
      triggers: [binding.state.apply((s) => s.content)],
    }, { ...parent, dependsOn: [binding] });
    this.bootResources = [cmdline, binding, initramfs];

    const reboot =
      args.reboot === "never"
        ? undefined
        : new HostReboot(`${name}-reboot`, {
            connection,
            // What changes the next boot; their states are stable across runs with nothing to do.
            triggers: [cmdline.state, binding.state.apply((s) => s.content), initramfs.state.apply((s) => ({ release: s.release, owned: s.owned }))],
            expectArgs: args.kernelArgs,
            expectVfioDevices: binding.state.apply((s) => s.addresses),
            timeoutSeconds: args.rebootTimeoutSeconds,
          }, { ...parent, dependsOn: this.bootResources });

    this.boundDevices = binding.state.apply((s) => s.addresses);
    this.boundIds = binding.state.apply((s) => s.ids);
    // Before the first reboot the groups are unknown to the binding; the verified boot knows them.
    this.iommuGroups = reboot
      ? reboot.observed.apply((o) => [...new Set(Object.values(o.groups ?? {}))].sort((a, b) => a - b))
      : binding.state.apply((s) => s.groups);
    this.verifiedBootId = reboot ? reboot.observed.apply((o) => o.bootId) : pulumi.output(undefined);
    this.drivers = reboot ? reboot.observed.apply((o) => o.drivers) : pulumi.output(undefined);
    this.plannedChanges = pulumi
      .all([cmdline.plannedChanges, binding.plannedChanges, initramfs.plannedChanges])
      .apply((lists) => lists.flat());
    this.registerOutputs({
      boundDevices: this.boundDevices,
      boundIds: this.boundIds,
      iommuGroups: this.iommuGroups,
      verifiedBootId: this.verifiedBootId,
      drivers: this.drivers,
    });
  }
}
