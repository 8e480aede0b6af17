// The whole VfioBinding plan: the selection checked against the host, then whether the kernel can
// let vfio-pci claim those devices before their host drivers and the IOMMU remap their interrupts,
// then whether the stack's kernel command line agrees with it, then the file to write.
import { KernelModules } from "../kernel/modules";
import { InterruptRemapping, interruptRemappingCheck } from "../kernel/preflight";
import { commandLineProblems } from "./commandLine";
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
  /** The stack's kernel args (vfio-host:kernelArgs): what the next boot's command line gets from the stack. */
  readonly kernelArgs: readonly string[];
  /** Whether the IOMMU remaps interrupts (kernel/preflight.ts interruptRemapping): vfio_iommu_type1 refuses the devices without it. */
  readonly interruptRemapping: InterruptRemapping;
}

export type VfioBindingPlan =
  | {
      readonly ok: true;
      readonly selection: SelectedDevices;
      readonly content: string;
      readonly changes: readonly string[];
      readonly warnings: readonly string[];
    }
  | {
      readonly ok: false;
      /** The input the errors are about: the selection, or the stack's kernel args. */
      readonly key: "selection" | "kernelArgs";
      readonly errors: readonly string[];
      readonly warnings: readonly string[];
    };

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
  const remapping = interruptRemappingCheck(request.interruptRemapping, inputs.allowUnsafeInterrupts);
  if (remapping.refusal !== undefined) errors.push(remapping.refusal);
  // Remapping on and nothing acknowledged is the normal case: nothing to say.
  else if (request.interruptRemapping.state !== "on" || inputs.allowUnsafeInterrupts) warnings.push(remapping.note);
  if (!selection.ok) return { ok: false, key: "selection", errors, warnings };

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
  if (errors.length > 0) return { ok: false, key: "selection", errors, warnings };

  const commandLine = commandLineProblems({
    kernel,
    ids: inputs.bindBy === "ids" ? selection.ids : undefined,
    allowUnsafeInterrupts: inputs.allowUnsafeInterrupts,
    kernelArgs: request.kernelArgs,
  });
  if (commandLine.length > 0) return { ok: false, key: "kernelArgs", errors: commandLine, warnings };

  // Written even when vfio is built in and its options come from the command line alone: modprobe
  // passes over the options of a built-in module, so the file is harmless there, and writing it
  // keeps one behaviour on every kernel: a later kernel that builds vfio-pci as a module reads it,
  // destroy gives the file back either way, and InitramfsModules and HostReboot stay triggered by it.
  const common = { softdepDrivers: selection.softdepDrivers, allowUnsafeInterrupts: inputs.allowUnsafeInterrupts };
  const content = renderModprobeConf(
    inputs.bindBy === "address" ? { ...common, bindBy: "address", addresses: selection.addresses } : { ...common, ids: selection.ids },
  );
  return {
    ok: true,
    selection,
    content,
    changes: describeModprobeChanges(request.currentConf, content),
    warnings,
  };
}
