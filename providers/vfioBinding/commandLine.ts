// What the stack's kernel command line (vfio-host:kernelArgs, which KernelCmdline writes) means to
// VfioBinding: whether it gives vfio_pci and vfio_iommu_type1 the options the binding needs (whether
// it turns the IOMMU on is kernel/preflight.ts's iommuOnAtBoot). A built-in module reads its options only from
// there (`module.param=value`); a loaded one gets them from there too, beside /etc/modprobe.d
// (modprobe(8) for kmod; busybox modprobe reads /proc/cmdline as well), so a value there that
// contradicts the selection is refused either way.
import { kernelArgKey, kernelArgValue } from "../kernel/cmdline";
import { KernelModules } from "../kernel/modules";
import { KERNEL_ARGS_KEY } from "../kernel/preflight";
import { isTrueParameter } from "./modprobeConf";

/** The arg the kernel acts on for `key`: the last one, since each occurrence is parsed in turn. */
function lastArg(args: readonly string[], key: string): string | undefined {
  return args.filter((arg) => kernelArgKey(arg) === key).at(-1);
}

export interface VfioCommandLineRequest {
  readonly kernel: KernelModules;
  /** vfio-pci's ids with bindBy "ids"; undefined with bindBy "address", which sets none. */
  readonly ids: readonly string[] | undefined;
  readonly allowUnsafeInterrupts: boolean;
  /** The stack's kernel args, in order. */
  readonly kernelArgs: readonly string[];
}

interface ModuleOption {
  readonly module: "vfio_pci" | "vfio_iommu_type1";
  readonly key: string;
  /** The arg to write; undefined when the key must not be on the command line at all. */
  readonly arg?: string;
  /** What the binding wants, for messages. */
  readonly wanted: string;
  readonly agrees: (value: string | undefined) => boolean;
}

/** vfio-pci parses each id with sscanf("%x:%x…"), so neither order nor case matters. */
const idSet = (ids: readonly string[]): string =>
  [...new Set(ids.map((id) => id.trim().toLowerCase()).filter((id) => id !== ""))].sort().join(",");

function moduleOptions(request: VfioCommandLineRequest): ModuleOption[] {
  const { ids } = request;
  const vfioPci: ModuleOption =
    ids === undefined
      ? { module: "vfio_pci", key: "vfio_pci.ids", wanted: 'bindBy "address", which hands vfio-pci the selected addresses only', agrees: () => false }
      : {
          module: "vfio_pci",
          key: "vfio_pci.ids",
          arg: `vfio_pci.ids=${ids.join(",")}`,
          wanted: `the selection's ids ${ids.join(",")}`,
          agrees: (value) => idSet((value ?? "").split(",")) === idSet(ids),
        };
  const unsafeInterrupts: ModuleOption = {
    module: "vfio_iommu_type1",
    key: "vfio_iommu_type1.allow_unsafe_interrupts",
    arg: "vfio_iommu_type1.allow_unsafe_interrupts=1",
    wanted: "allowUnsafeInterrupts: true",
    // A bool parameter given without a value is set (kernel/params.c, param_set_bool).
    agrees: (value) => value === undefined || isTrueParameter(value),
  };
  return [vfioPci, ...(request.allowUnsafeInterrupts ? [unsafeInterrupts] : [])];
}

const quoted = (args: readonly string[]) => args.map((arg) => `"${arg}"`).join(" and ");

/**
 * What the stack's kernel args lack or contradict, one message per problem, each naming
 * vfio-host:kernelArgs and the exact arg to write. Empty when the command line agrees.
 */
export function commandLineProblems(request: VfioCommandLineRequest): string[] {
  const { kernel, kernelArgs } = request;
  const options = moduleOptions(request);
  const contradicting = options.flatMap((option) => {
    const found = lastArg(kernelArgs, option.key);
    if (found === undefined || option.agrees(kernelArgValue(found))) return [];
    const fix = option.arg ? `write "${option.arg}" instead` : "take it out";
    return [
      `${KERNEL_ARGS_KEY} has "${found}", which contradicts ${option.wanted}: the kernel command line reaches ${option.module} ` +
        `whether it is built in or loaded, so ${fix}`,
    ];
  });
  const missing = options.flatMap(({ module, key, arg }) =>
    arg !== undefined && kernel.builtin[module] !== undefined && lastArg(kernelArgs, key) === undefined ? [{ module, arg }] : [],
  );
  if (missing.length === 0) return contradicting;
  const [takes, them] = missing.length === 1 ? ["which takes its", "it"] : ["which take their", "them"];
  return [
    `kernel ${kernel.release} builds in ${missing.map((m) => m.module).join(" and ")}, ${takes} options only from the kernel ` +
      `command line (/etc/modprobe.d never reaches ${them}): add ${quoted(missing.map((m) => m.arg))} to ${KERNEL_ARGS_KEY}`,
    ...contradicting,
  ];
}
