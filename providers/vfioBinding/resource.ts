// VfioBinding: /etc/modprobe.d/vfio.conf telling vfio-pci which devices to claim at boot, after
// the selection was checked against the host (whole IOMMU groups, nothing the host needs to boot or
// to keep this SSH session). The initramfs carries modprobe.d, so InitramfsModules rebuilds it
// when this content changes.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { prefetchBootReads, registerBootReads } from "../bootReads";
import { readStaging, stagedFile, Staging } from "../bootTrial/host";
import { StagedFile } from "../bootTrial/plan";
import { restoreWholeFile, staleBackupRefusal } from "../hostFile";
import { HostResource, hostResourceProvider, InputError } from "../hostResource";
import { rebuildInitramfs } from "../initramfsModules/resource";
import { describeInput } from "../inputErrors";
import { interruptRemapping, iommuOnAtBoot } from "../kernel/preflight";
import { ConnectionInput } from "../ssh/connection";
import { sha256Hex } from "../ssh/host";
import { MODPROBE_CONF_PATH } from "./modprobeConf";
import { planVfioBinding } from "./plan";
import { readVfioHostFacts } from "./readFacts";
import { VfioBindingInputs } from "./schema";

const ResourceInputs = z.strictObject({
  selection: VfioBindingInputs,
  /** The file under /etc/modprobe.d this resource owns. */
  path: z
    .string()
    .regex(/^\/etc\/modprobe\.d\/[A-Za-z0-9_.-]+\.conf$/, "path must be a .conf file directly in /etc/modprobe.d, e.g. /etc/modprobe.d/vfio.conf")
    .default(MODPROBE_CONF_PATH),
  /**
   * The stack's kernel args (vfio-host:kernelArgs, KernelCmdline's args): whether the next boot
   * turns the IOMMU on (groups are checked after it), and the options a built-in vfio_pci or
   * vfio_iommu_type1 can only read from the command line.
   */
  kernelArgs: z
    .array(
      z.string({ error: (issue) => `kernelArgs: ${describeInput(issue.input)} is not a string; write a kernel argument such as "vfio_pci.ids=8086:3a67"` }),
      { error: 'kernelArgs: must be a list of kernel arguments, e.g. ["intel_iommu=on", "iommu=pt"]' },
    )
    .default([]),
  /**
   * Something other than kernelArgs turns the IOMMU on at the next boot (a boot entry the stack does
   * not manage). VfioHost set it before kernelArgs existed, so state recorded then holds it too.
   */
  iommuAtNextBoot: z.boolean().default(false),
  /** The stack boots changes once as a trial first: stage the file for HostReboot instead of writing it. */
  trial: z.boolean().default(false),
});
type Inputs = z.output<typeof ResourceInputs>;

export interface VfioBindingState {
  path: string;
  content: string;
  /** The chosen devices' PCI addresses, their ids and groups: what the reboot verifies. */
  addresses: string[];
  ids: string[];
  groups: number[];
  groupCheck: "enforced" | "deferred";
  /** What this stack last wrote to `path` (absent in state recorded before it was kept: then `content`'s). */
  sha256?: string;
  /** Staged for a trial boot instead of written (HostReboot writes it once the trial passed). */
  staged?: StagedFile[];
}

/** `refusal`: planned without state, why creating the resource must not write (see staleBackupRefusal). */
type Plan = VfioBindingState & { changes: string[]; warnings: string[]; current?: string; refusal?: string; staging: Staging };

registerBootReads((host, trial) => Promise.all([readVfioHostFacts(host), readStaging(host, trial)]));

export const vfioBindingProvider = hostResourceProvider<Inputs, Plan, VfioBindingState>({
  schema: ResourceInputs,
  identity: (inputs) => inputs.path,
  prefetch: prefetchBootReads,
  async plan(host, inputs, state) {
    // Concurrent reads: each is one round trip, and the host works on them at once.
    const [reading, currentBytes, backup, staging] = await Promise.all([
      readVfioHostFacts(host),
      host.readFile(inputs.path),
      state ? undefined : host.readBackup(inputs.path),
      readStaging(host, inputs.trial),
    ]);
    const current = currentBytes?.toString("utf8");
    const hasGroups = reading.facts.pciDevices.some((d) => d.iommuGroup !== undefined);
    const plan = planVfioBinding({
      inputs: inputs.selection,
      facts: { ...reading.facts, iommuEnabledAtNextBoot: hasGroups || inputs.iommuAtNextBoot || iommuOnAtBoot(reading.preflight, inputs.kernelArgs) },
      kernel: reading.kernel,
      modprobe: reading.modprobe,
      currentConf: current,
      kernelArgs: inputs.kernelArgs,
      interruptRemapping: interruptRemapping(reading.preflight),
    });
    if (!plan.ok) throw new InputError(plan.key, plan.errors.join("\n"));
    const s = plan.selection;
    return {
      path: inputs.path,
      content: plan.content,
      addresses: [...s.addresses],
      ids: [...s.ids],
      groups: [...s.groups],
      groupCheck: s.groupCheck,
      changes: plan.changes.map((c) => `${inputs.path}: ${c}`),
      warnings: [...plan.warnings, ...reading.warnings],
      current,
      refusal: backup === undefined ? undefined : staleBackupRefusal(inputs.path, plan.content, currentBytes, backup),
      staging,
    };
  },
  describe: (plan) =>
    plan.current === plan.content
      ? []
      : [...(plan.changes.length > 0 ? plan.changes : [`${plan.path}: rewrite`]), ...(plan.staging.line ? [plan.staging.line] : [])],
  warnings: (plan) => plan.warnings,
  // Known at preview, so a guest can be checked against the devices this binding will own.
  planned: (plan) => ({ addresses: plan.addresses }),
  async apply(host, plan) {
    if (plan.refusal) throw new Error(plan.refusal);
    const { changes: _c, warnings: _w, current: _p, refusal: _r, staging, ...state } = plan;
    if (staging.stage) {
      return { ...state, sha256: sha256Hex(plan.content), staged: plan.current === plan.content ? [] : [stagedFile(plan.path, plan.current, plan.content)] };
    }
    if (plan.current !== plan.content) {
      await host.backupOnce(plan.path);
      await host.writeFileAtomic(plan.path, plan.content);
    }
    return { ...state, sha256: sha256Hex(plan.content) };
  },
  async revert(host, _inputs, state) {
    // The whole file is ours: what was there before (or nothing) comes back, unless it was edited
    // since; the initramfs is rebuilt from whatever the file now is.
    await restoreWholeFile(host, state.path, state.sha256 ?? sha256Hex(state.content), "rebuild the initramfs (update-initramfs -u; on Alpine: mkinitfs)");
    await rebuildInitramfs(host);
  },
});

export interface VfioBindingArgs {
  connection: pulumi.Input<ConnectionInput>;
  /** What to hand to vfio-pci: devices (ids or addresses), iommuGroups, usbDevices, and the safety overrides. */
  selection: pulumi.Input<z.input<typeof VfioBindingInputs>>;
  path?: pulumi.Input<string>;
  /** The stack's kernel args, as KernelCmdline gets them. */
  kernelArgs?: pulumi.Input<pulumi.Input<string>[]>;
  iommuAtNextBoot?: pulumi.Input<boolean>;
  trial?: pulumi.Input<boolean>;
}

export class VfioBinding extends HostResource {
  declare readonly state: pulumi.Output<VfioBindingState>;
  declare readonly planned: pulumi.Output<{ addresses: string[] }>;

  constructor(name: string, args: VfioBindingArgs, opts?: pulumi.CustomResourceOptions) {
    super("VfioBinding", name, args, opts);
  }
}
