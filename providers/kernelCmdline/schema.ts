// KernelCmdline inputs, checked before anything touches a host (the role NixOS `assertions` play).
// Every message names the key, the value found and a value that would be accepted.
import { z } from "zod";
import { describeInput } from "../inputErrors";
import { kernelArgKey } from "../kernel/cmdline";
import { Backend, BACKEND_NAMES, backends, BootFiles, CmdlineBackend } from "./bootConfig";
import { checkBackendBoots } from "./bootedLoader";

// No whitespace, quotes, backslashes, $ or `: an arg must survive shell quoting and grub.cfg as is.
const KERNEL_ARG = /^[A-Za-z0-9_][A-Za-z0-9_.-]*(=[^\s"'\\$`]*)?$/;
const MODULE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;

// grub-mkconfig's /etc/grub.d/10_linux writes the args unquoted into grub.cfg
// (`linux ${rel_dirname}/${basename} root=... ro ${args}`), and GRUB's script parser reads these
// as syntax there (GRUB manual, "Shell-like scripting": ; | & < > { } end or group commands,
// $ expands, quotes and \ quote, a newline ends the command). /etc/default/grub and
// /etc/update-extlinux.conf are sourced by sh inside double quotes, where $ ` " \ act too.
const GRUB_SCRIPT_CHARACTERS = [";", "|", "&", "<", ">", "{", "}", "$", "`", '"', "'", "\\", "\n", "\r"];

/** The first character of `arg` that grub.cfg or the sourced defaults file would read as syntax. */
export function grubScriptCharacter(arg: string): string | undefined {
  return [...arg].find((c) => GRUB_SCRIPT_CHARACTERS.includes(c));
}

/**
 * Keys that decide how the host finds, mounts and starts its root filesystem: a wrong value (or a
 * removed one) leaves it unbootable, so they are changed only when acknowledgeBootCritical names
 * them. root/rootfstype/rootflags and init/rdinit: Documentation/admin-guide/kernel-parameters.txt;
 * rd.*: dracut.cmdline(7), read by the initramfs to assemble and unlock the root device.
 */
export function isBootCriticalKey(key: string): boolean {
  return ["root", "rootfstype", "rootflags", "init", "rdinit"].includes(key) || key.startsWith("rd.");
}

const ACKNOWLEDGE_KEY = "acknowledgeBootCritical (vfio-host:acknowledgeBootCriticalArgs in a host stack)";

/** `vfio-pci.ids=...`: busybox modprobe matches module options on /proc/cmdline by the underscore name only. */
function dashedModuleOption(arg: string): string | undefined {
  const key = kernelArgKey(arg);
  const dot = key.indexOf(".");
  if (dot < 0 || !key.slice(0, dot).includes("-")) return undefined;
  return key.slice(0, dot).replace(/-/g, "_") + arg.slice(dot);
}

const kernelArg = (field: string) =>
  z
    .string({ error: (issue) => `${field}: ${describeInput(issue.input)} is not a string; write a kernel argument such as "intel_iommu=on"` })
    .superRefine((arg, ctx) => {
      const character = grubScriptCharacter(arg);
      if (character !== undefined) {
        ctx.addIssue({
          code: "custom",
          message:
            `${field} (vfio-host:kernelArgs): ${describeInput(arg)} contains ${describeInput(character)}, which grub-mkconfig copies unquoted into ` +
            `grub.cfg, where GRUB's script parser reads it as syntax, not as part of the argument; write the argument without it`,
        });
        return;
      }
      if (!KERNEL_ARG.test(arg)) {
        ctx.addIssue({
          code: "custom",
          message: `${field}: ${describeInput(arg)} is not a kernel argument; write key or key=value with no spaces, quotes, backslashes, $ or \`, e.g. "intel_iommu=on"`,
        });
        return;
      }
      const fixed = dashedModuleOption(arg);
      if (fixed) {
        ctx.addIssue({
          code: "custom",
          message:
            `${field}: ${describeInput(arg)} names the module with a dash; module options on the kernel command line need the ` +
            `underscore name (busybox modprobe matches "${kernelArgKey(fixed).split(".")[0]}", not "${kernelArgKey(arg).split(".")[0]}"), write ${describeInput(fixed)}`,
        });
      }
    });

const removal = z
  .string({ error: (issue) => `remove: ${describeInput(issue.input)} is not a string; write a key such as "nomodeset" or an exact arg such as "iommu=soft"` })
  .regex(KERNEL_ARG, {
    error: (issue) => `remove: ${describeInput(issue.input)} is neither a key nor a key=value argument; write e.g. "nomodeset" or "iommu=soft"`,
  });

const moduleName = z
  .string({ error: (issue) => `modules: ${describeInput(issue.input)} is not a string; write a module name such as "vfio-pci"` })
  .regex(MODULE_NAME, {
    error: (issue) => `modules: ${describeInput(issue.input)} is not a module name; write it as modprobe does, e.g. "vfio-pci"`,
  });

const modulesNeedExtlinux =
  'modules: only the extlinux backend (Alpine\'s update-extlinux) puts modules= on the kernel command line; with any other backend ' +
  'list the modules in an InitramfsModules resource instead, or set backend: "extlinux"';

const orList = (names: readonly string[]) => names.map((n) => `"${n}"`).join(", ").replace(/, ([^,]*)$/, " or $1");

export const BOOT_BACKENDS = ["auto", ...BACKEND_NAMES] as const;
export type BootBackend = (typeof BOOT_BACKENDS)[number];

export const KernelCmdlineInputs = z
  .strictObject(
    {
      args: z
        .array(kernelArg("args"), { error: 'args: must be a list of kernel arguments, e.g. ["intel_iommu=on", "iommu=pt"]' })
        .min(1, { error: 'args: is empty; list the arguments this resource owns, e.g. ["intel_iommu=on", "iommu=pt"]' }),
      remove: z.array(removal, { error: 'remove: must be a list of keys or arguments, e.g. ["nomodeset"]' }).default([]),
      backend: z
        .enum(BOOT_BACKENDS, { error: (issue) => `backend: ${describeInput(issue.input)} must be ${orList(BOOT_BACKENDS)}` })
        .default("auto"),
      modules: z.array(moduleName, { error: 'modules: must be a list of module names, e.g. ["vfio", "vfio-pci"]' }).default([]),
      /** Boot-critical keys (isBootCriticalKey) that args may set or remove may take off, e.g. ["root"]. */
      acknowledgeBootCritical: z
        .array(z.string(), { error: `${ACKNOWLEDGE_KEY}: must be a list of keys, e.g. ["root"]` })
        .default([]),
      /** The stack boots changes once as a trial first: stage them for HostReboot instead of writing them (GRUB, systemd-boot). */
      trial: z.boolean().default(false),
    },
    {
      error: (issue) =>
        issue.code === "unrecognized_keys"
          ? `Unknown KernelCmdline input ${issue.keys.map((k) => `\`${k}\``).join(", ")}; the inputs are args, remove, backend, modules, acknowledgeBootCritical and trial`
          : 'KernelCmdline inputs must be an object, e.g. { args: ["intel_iommu=on", "iommu=pt"] }',
    },
  )
  .superRefine((inputs, ctx) => {
    const seen = new Map<string, string>();
    for (const arg of inputs.args) {
      const key = kernelArgKey(arg);
      const earlier = seen.get(key);
      if (earlier !== undefined) {
        ctx.addIssue({ code: "custom", path: ["args"], message: `args: ${describeInput(earlier)} and ${describeInput(arg)} set the same key; keep one, e.g. ${describeInput(earlier)}` });
      }
      seen.set(key, arg);
    }
    for (const entry of inputs.remove) {
      const owner = seen.get(kernelArgKey(entry));
      if (owner !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["remove"],
          message: `remove: ${describeInput(entry)} names the key of ${describeInput(owner)} in \`args\`, which already replaces any other value of it; drop ${describeInput(entry)} from \`remove\``,
        });
      }
    }
    if (inputs.backend !== "auto" && inputs.backend !== "extlinux" && inputs.modules.length > 0) {
      ctx.addIssue({ code: "custom", path: ["modules"], message: modulesNeedExtlinux });
    }
    const acknowledged = new Set(inputs.acknowledgeBootCritical);
    const critical = (field: "args" | "remove", entry: string, what: string) => {
      const key = kernelArgKey(entry);
      if (!isBootCriticalKey(key) || acknowledged.has(key)) return;
      ctx.addIssue({
        code: "custom",
        path: [field],
        message:
          `${field}: ${describeInput(entry)} ${what} ${key}=, which decides how the host finds and starts its root filesystem: a wrong ` +
          `value leaves it unbootable. If that is what you mean, add ${describeInput(key)} to ${ACKNOWLEDGE_KEY}`,
      });
    };
    for (const arg of inputs.args) critical("args", arg, "sets");
    for (const entry of inputs.remove) critical("remove", entry, "takes off");
    const touched = [...inputs.args, ...inputs.remove].map(kernelArgKey);
    for (const key of acknowledged) {
      if (isBootCriticalKey(key) && touched.includes(key)) continue;
      ctx.addIssue({
        code: "custom",
        path: ["acknowledgeBootCritical"],
        message:
          `${ACKNOWLEDGE_KEY}: ${describeInput(key)} acknowledges nothing (no boot-critical key of that name in args or remove); ` +
          `drop it, so that a later ${key}= is not acknowledged in advance`,
      });
    }
  });

export type KernelCmdlineInputs = z.output<typeof KernelCmdlineInputs>;

/** The backend to edit, and why (for preview). */
export interface ResolvedBackend {
  readonly backend: Backend;
  readonly why: string;
}

/**
 * Resolves backend "auto" from the host's files and the loader that booted it, and refuses a
 * backend whose files do not boot the host: an edit there would only show after the reboot, as a
 * boot without the arguments. Throws with the fix when that is ambiguous or impossible.
 */
export function resolveBootBackend(inputs: Pick<KernelCmdlineInputs, "backend" | "modules">, files: BootFiles): ResolvedBackend {
  const all = Object.entries(backends) as [Backend, CmdlineBackend][];
  const booted = files.booted && files.booted.loader !== "unknown" ? files.booted : undefined;
  const boots = (name: Backend) => booted === undefined || checkBackendBoots(name, booted) === undefined;
  const evidence = booted ? `booted through ${booted.loader}: ${booted.evidence.join("; ")}` : "which loader booted the host is not known";
  let resolved: ResolvedBackend;
  if (inputs.backend !== "auto") {
    if (!backends[inputs.backend].present(files)) throw new Error(backends[inputs.backend].absentMessage);
    const refusal = booted && checkBackendBoots(inputs.backend, booted);
    if (refusal) throw new Error(refusal);
    resolved = { backend: inputs.backend, why: `set in backend; ${evidence}` };
  } else {
    const found = all.filter(([, b]) => b.present(files));
    if (found.length === 0) {
      throw new Error(
        `backend: "auto" found the files of none of ${all.map(([, b]) => b.label).join("; ")} on the host; ` +
          "install the bootloader's package, or manage the kernel command line another way",
      );
    }
    const booting = found.filter(([name]) => boots(name));
    if (booting.length === 0) {
      throw new Error(
        `backend: "auto" found the files of ${found.map(([, b]) => b.label).join(" and ")} on the host, but it ${evidence}, ` +
          "so an edit there would not reach the next boot; configure that loader's own files, or set backend explicitly if the detection is wrong",
      );
    }
    if (booting.length > 1) {
      throw new Error(
        `backend: "auto" found the files of ${booting.map(([, b]) => b.label).join(" and ")} on the host; set backend to the one that boots it: ` +
          booting.map(([name, b]) => `"${name}" if ${b.generated} is what boots`).join(", "),
      );
    }
    resolved = { backend: booting[0][0], why: `auto: the only loader whose files are here${booted ? " and that booted the host" : ""}; ${evidence}` };
  }
  if (resolved.backend !== "extlinux" && inputs.modules.length > 0) throw new Error(modulesNeedExtlinux);
  return resolved;
}
