// Alpine's update-extlinux sources /etc/update-extlinux.conf and writes each kernel's
// `APPEND root=... modules=<modules> <default_kernel_opts>` into /boot/extlinux.conf. Alpine's
// initramfs init loads the comma list of `modules=` before it scans for devices, which is how
// vfio-pci gets to claim devices before the host's own drivers on Alpine.
import { kernelArgKey, kernelArgSyntax, kernelArgValue, missingKernelArgs, parseKernelArgs } from "../kernel/cmdline";
import { absentModules, KernelModules, normalizeModuleName } from "../kernel/modules";
import { ShellListOwnership, ShellVariableSpec, adoptShellList, describeShellListChange, planShellList, revertShellList } from "../text/shellVariable";
import { splitTokens, TokenRequest, TokenSyntax } from "../text/tokenList";
import type { BootConfigCheck } from "./bootConfig";

export const UPDATE_EXTLINUX_CONF_PATH = "/etc/update-extlinux.conf";
export const EXTLINUX_CONF_PATH = "/boot/extlinux.conf";

const kernelOpts: ShellVariableSpec = {
  name: "default_kernel_opts",
  source: UPDATE_EXTLINUX_CONF_PATH,
  example: 'default_kernel_opts="quiet rootfstype=ext4"',
};
const modulesList: ShellVariableSpec = {
  name: "modules",
  source: UPDATE_EXTLINUX_CONF_PATH,
  example: "modules=sd-mod,usb-storage,ext4",
};

/** The comma list of `modules=sd-mod,usb-storage,ext4`. */
const commaModuleSyntax: TokenSyntax = {
  parse: (text) => (text === "" ? { leading: "", tokens: [], separators: [], trailing: "" } : splitTokens(text, ",")),
  separator: ",",
  key: (token) => (token === "" ? undefined : normalizeModuleName(token)),
  satisfies: () => true,
  end: (list) => list.tokens.length,
};

export interface ExtlinuxOwnership {
  readonly kernelOpts: ShellListOwnership;
  readonly modules: ShellListOwnership;
}

export interface UpdateExtlinuxRequest {
  /** /etc/update-extlinux.conf as read from the host. */
  readonly text: string;
  readonly ensure: readonly string[];
  readonly remove?: readonly string[];
  /** Appended to `modules=` when missing, e.g. ["vfio", "vfio-pci", "vfio_iommu_type1"]. */
  readonly modules?: readonly string[];
  readonly previouslyOwned?: ExtlinuxOwnership;
  /** Without previouslyOwned: the file as vfio-host saved it before its first edit, to recognise our own args in. */
  readonly backup?: string;
  /** The kernel that boots next; when given, modules it does not have are refused. */
  readonly kernel?: KernelModules;
}

export interface UpdateExtlinuxPlan {
  readonly text: string;
  readonly owned: ExtlinuxOwnership;
  readonly changes: readonly string[];
}

export function planUpdateExtlinuxConf(request: UpdateExtlinuxRequest): UpdateExtlinuxPlan {
  const modules = request.modules ?? [];
  const absent = request.kernel ? absentModules(request.kernel, modules) : [];
  if (absent.length > 0) {
    throw new Error(
      `modules: kernel ${request.kernel?.release} has no ${absent.map((m) => `"${m}"`).join(", ")} (neither in ` +
        `modules.dep nor in modules.builtin); remove ${absent.length === 1 ? "it" : "them"} from \`modules\``,
    );
  }
  const optsRequest = { ensure: request.ensure, remove: request.remove };
  const previouslyOwned = request.previouslyOwned ?? (request.backup !== undefined ? adoptExtlinux(request.text, request.backup, optsRequest, modules) : undefined);
  // Revert both before applying either: lines appended for an absent variable must come off
  // last-first, or removing one would glue its neighbours together.
  const base = previouslyOwned ? revertUpdateExtlinuxConf(request.text, previouslyOwned) : request.text;
  const opts = planShellList(base, kernelOpts, optsRequest, kernelArgSyntax);
  const mods = planShellList(opts.text, modulesList, { ensure: modules }, commaModuleSyntax);
  return {
    text: mods.text,
    owned: { kernelOpts: opts.owned, modules: mods.owned },
    changes: [
      ...describeShellListChange(request.text, mods.text, kernelOpts, kernelArgSyntax).map((c) => `default_kernel_opts: ${c}`),
      ...describeShellListChange(request.text, mods.text, modulesList, commaModuleSyntax).map((c) => `modules: ${c}`),
    ],
  };
}

/** Each variable's own args recognised from the backup; one that differs in other ways is left unowned. */
function adoptExtlinux(text: string, backup: string, opts: TokenRequest, modules: readonly string[]): ExtlinuxOwnership {
  const none = { tokens: { added: [], replaced: [], removed: [] }, quoting: "double" } as const;
  return {
    kernelOpts: adoptShellList(text, backup, kernelOpts, opts, kernelArgSyntax) ?? none,
    modules: adoptShellList(text, backup, modulesList, { ensure: modules }, commaModuleSyntax) ?? none,
  };
}

export function revertUpdateExtlinuxConf(text: string, owned: ExtlinuxOwnership): string {
  const withoutModules = revertShellList(text, modulesList, owned.modules, commaModuleSyntax);
  return revertShellList(withoutModules, kernelOpts, owned.kernelOpts, kernelArgSyntax);
}

/** Checks every APPEND line of /boot/extlinux.conf (one per kernel) for the args and modules. */
export function extlinuxCfgHasArgs(extlinuxConfText: string, args: readonly string[], modules: readonly string[]): BootConfigCheck {
  const problems: string[] = [];
  let label = "";
  let appendLines = 0;
  extlinuxConfText.split("\n").forEach((line, i) => {
    const words = parseKernelArgs(line);
    const keyword = (words[0] ?? "").toUpperCase();
    if (keyword === "LABEL") label = words.slice(1).join(" ");
    if (keyword !== "APPEND") return;
    appendLines++;
    const missingArgs = missingKernelArgs(line, args);
    const loaded = [...words].reverse().find((w) => kernelArgKey(w) === "modules");
    const listed = (loaded === undefined ? "" : kernelArgValue(loaded) ?? "").split(",").map(normalizeModuleName);
    const missingModules = modules.filter((m) => !listed.includes(normalizeModuleName(m)));
    if (missingArgs.length === 0 && missingModules.length === 0) return;
    const lacks = [
      ...(missingArgs.length > 0 ? [missingArgs.join(" ")] : []),
      ...(missingModules.length > 0 ? [`modules ${missingModules.join(",")}`] : []),
    ].join(" and ");
    problems.push(`${EXTLINUX_CONF_PATH} line ${i + 1}${label ? ` (LABEL ${label})` : ""}: APPEND lacks ${lacks}; run update-extlinux`);
  });
  if (appendLines === 0) problems.push(`${EXTLINUX_CONF_PATH} has no APPEND line; run update-extlinux`);
  return { ok: problems.length === 0, problems };
}
