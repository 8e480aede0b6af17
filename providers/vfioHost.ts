// VfioHost: a whole passthrough host from one description, in boot order: the kernel command line,
// the vfio-pci binding, the initramfs that carries both, then one reboot (only when one of them
// changed) that proves vfio-pci claimed every selected device.
import * as pulumi from "@pulumi/pulumi";
import { InitramfsModules } from "./initramfsModules/resource";
import { KernelCmdline } from "./kernelCmdline/resource";
import { BootBackend } from "./kernelCmdline/schema";
import { HostReboot } from "./reboot/resource";
import { ConnectionInput } from "./ssh/connection";
import { VfioBinding, VfioBindingArgs } from "./vfioBinding/resource";

export interface VfioHostArgs {
  connection: pulumi.Input<ConnectionInput>;
  kernelArgs: string[];
  removeKernelArgs?: string[];
  /** Boot-critical keys (root, init, rd.*, ...) that kernelArgs may set or removeKernelArgs take off. */
  acknowledgeBootCriticalArgs?: string[];
  bootBackend?: BootBackend;
  extlinuxModules?: string[];
  vfio: VfioBindingArgs["selection"];
  /** "never": write everything but leave the reboot (and its verification) to the user. */
  reboot?: "auto" | "never";
  /** How long the reboot may take (HostReboot's timeoutSeconds). */
  rebootTimeoutSeconds?: number;
  /**
   * Boot a change once first (GRUB's or systemd-boot's one-shot) and make it permanent only after that boot passed
   * verification (default true; needs reboot "auto"). Off for a host whose boot loader config is
   * shared with something else that runs update-grub or edits custom.cfg.
   */
  trialBoot?: boolean;
  /** softdog's margin for a trial boot: one not verified within it is reset (0 = no watchdog). */
  trialWatchdogSeconds?: number;
  /** How long a panicking trial waits before it reboots into the previous configuration. */
  trialPanicSeconds?: number;
}

export class VfioHost extends pulumi.ComponentResource {
  /** PCI addresses handed to vfio-pci (known at preview: a guest's hostdevs are checked against them), their ids and IOMMU groups. */
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
    const trial = args.trialBoot !== false && args.reboot !== "never";

    const cmdline = new KernelCmdline(`${name}-cmdline`, {
      connection,
      args: args.kernelArgs,
      remove: args.removeKernelArgs,
      acknowledgeBootCritical: args.acknowledgeBootCriticalArgs,
      backend: args.bootBackend,
      modules: args.extlinuxModules,
      trial,
    }, parent);
    const binding = new VfioBinding(`${name}-vfio`, {
      connection,
      selection: args.vfio,
      // Where vfio_pci is built in, its options must be among these; they also say whether the IOMMU is on at the next boot.
      kernelArgs: args.kernelArgs,
      trial,
    }, parent);
    const initramfs = new InitramfsModules(`${name}-initramfs`, {
      connection,
      triggers: [binding.state.apply((s) => s.content)],
      trial,
      // The binding is deleted right after this resource and rebuilds the image then.
      rebuildOnDelete: false,
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
            ...(trial ? trialInputs(cmdline, binding, initramfs, args) : {}),
          }, { ...parent, dependsOn: this.bootResources });

    this.boundDevices = binding.planned.apply((p) => p.addresses);
    this.boundIds = binding.state.apply((s) => s.ids);
    // Before the first reboot the groups are unknown to the binding; the verified boot knows them.
    this.iommuGroups = reboot
      ? reboot.observed.apply((o) => [...new Set(Object.values(o.groups ?? {}))].sort((a, b) => a - b))
      : binding.state.apply((s) => s.groups);
    this.verifiedBootId = reboot ? reboot.observed.apply((o) => o.bootId) : pulumi.output(undefined);
    this.drivers = reboot ? reboot.observed.apply((o) => o.drivers) : pulumi.output(undefined);
    // Each staged resource names the trial boot; once is enough.
    this.plannedChanges = pulumi
      .all([cmdline.plannedChanges, binding.plannedChanges, initramfs.plannedChanges])
      .apply((lists) => [...new Set(lists.flat())]);
    this.registerOutputs({
      boundDevices: this.boundDevices,
      boundIds: this.boundIds,
      iommuGroups: this.iommuGroups,
      verifiedBootId: this.verifiedBootId,
      drivers: this.drivers,
    });
  }
}

/** HostReboot's trial inputs: the files the three resources staged and the image the trial needs. */
function trialInputs(cmdline: KernelCmdline, binding: VfioBinding, initramfs: InitramfsModules, args: VfioHostArgs) {
  const staged = pulumi.all([cmdline.state, binding.state, initramfs.state]).apply((states) => states.flatMap((s) => s.staged ?? []));
  return {
    staged,
    trial: initramfs.state.apply((image) => ({
      release: image.release,
      // HostReboot adds the staged modules list and modprobe.d; a command line change alone boots the live image.
      buildImage: image.stagedRebuild === true,
      options: {
        ...(args.trialPanicSeconds !== undefined ? { panicSeconds: args.trialPanicSeconds } : {}),
        ...(args.trialWatchdogSeconds !== undefined ? { watchdogSeconds: args.trialWatchdogSeconds } : {}),
      },
    })),
  };
}
