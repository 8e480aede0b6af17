// The whole VfioBinding plan: the selection checked against the host, then whether the kernel can
// let vfio-pci claim those devices before their host drivers, then the file to write.
import { KernelModules } from "../initramfsModules/kernelModules";
import { HostFacts } from "./hostFacts";
import { describeModprobeChanges, renderModprobeConf } from "./modprobeConf";
import { VfioBindingInputs } from "./schema";
import { SelectedDevices, describeDevices, hostModules, selectDevices } from "./selectDevices";

export interface VfioBindingRequest {
  readonly inputs: VfioBindingInputs;
  readonly facts: HostFacts;
  /** The kernel that boots next. */
  readonly kernel: KernelModules;
  /** Which modprobe runs in the initramfs: kmod (Debian/Ubuntu) or busybox (Alpine's mkinitfs). */
  readonly modprobe: "kmod" | "busybox";
  /** /etc/modprobe.d/vfio.conf as read from the host; undefined when absent. */
  readonly currentConf?: string;
}

export type VfioBindingPlan =
  | {
      readonly ok: true;
      readonly selection: SelectedDevices;
      readonly content: string;
      readonly changes: readonly string[];
      /**
       * Module options that must go on the kernel command line because the module is built in
       * (modprobe.d never reaches it): feed them to KernelCmdline's args.
       */
      readonly kernelArgs: readonly string[];
      readonly warnings: readonly string[];
    }
  | { readonly ok: false; readonly errors: readonly string[]; readonly warnings: readonly string[] };

export function planVfioBinding(request: VfioBindingRequest): VfioBindingPlan {
  const { inputs, kernel } = request;
  const selection = selectDevices(inputs, request.facts);
  const errors = selection.ok ? [] : [...selection.errors];
  const warnings = [...selection.warnings];
  const vfioBuiltIn = kernel.builtin["vfio_pci"] !== undefined;

  if (inputs.bindBy === "address" && request.modprobe === "busybox") {
    errors.push(
      'bindBy: "address" needs modprobe to run an `install` command in the initramfs (kmod does); this host\'s initramfs ' +
        'uses busybox modprobe, which ignores `install` lines, so nothing would set driver_override. Use bindBy: "ids"',
    );
  }
  if (inputs.bindBy === "address" && vfioBuiltIn) {
    errors.push(
      `bindBy: "address" needs vfio-pci to be a module (loading it runs the install command that sets driver_override); ` +
        `kernel ${kernel.release} builds it in, so use bindBy: "ids"`,
    );
  }
  if (!selection.ok) return { ok: false, errors, warnings };

  if (!vfioBuiltIn) {
    for (const driver of selection.softdepDrivers.filter((d) => kernel.builtin[d] !== undefined)) {
      const driven = selection.devices.filter((d) => hostModules(d).includes(driver));
      errors.push(
        `${describeDevices(driven)} ${driven.length === 1 ? "is" : "are"} driven by ${driver}, which kernel ${kernel.release} ` +
          `builds in: it claims ${driven.length === 1 ? "it" : "them"} before vfio-pci (a module) can load, and softdep cannot ` +
          `change that. Boot a kernel that builds ${driver} as a module`,
      );
    }
  }
  if (errors.length > 0) return { ok: false, errors, warnings };

  // Options of a built-in module only come from the kernel command line (module.param=value).
  const builtInOptions = [
    ...(vfioBuiltIn ? [{ module: "vfio_pci", arg: `vfio_pci.ids=${selection.ids.join(",")}` }] : []),
    ...(inputs.allowUnsafeInterrupts && kernel.builtin["vfio_iommu_type1"] !== undefined
      ? [{ module: "vfio_iommu_type1", arg: "vfio_iommu_type1.allow_unsafe_interrupts=1" }]
      : []),
  ];
  const kernelArgs = builtInOptions.map((o) => o.arg);
  if (builtInOptions.length > 0) {
    warnings.push(
      `kernel ${kernel.release} builds in ${builtInOptions.map((o) => o.module).join(" and ")}, so /etc/modprobe.d options ` +
        `do not reach ${builtInOptions.length === 1 ? "it" : "them"}; KernelCmdline's args must carry ${kernelArgs.join(" ")}`,
    );
  }
  const common = { softdepDrivers: selection.softdepDrivers, allowUnsafeInterrupts: inputs.allowUnsafeInterrupts };
  const content = renderModprobeConf(
    inputs.bindBy === "address" ? { ...common, bindBy: "address", addresses: selection.addresses } : { ...common, ids: selection.ids },
  );
  return {
    ok: true,
    selection,
    content,
    changes: describeModprobeChanges(request.currentConf, content),
    kernelArgs,
    warnings,
  };
}
