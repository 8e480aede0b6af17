// GRUB on Debian/Ubuntu: the args live in GRUB_CMDLINE_LINUX_DEFAULT of /etc/default/grub, which
// update-grub (grub-mkconfig) sources, then /etc/default/grub.d/*.cfg, and writes into the linux
// lines of /boot/grub/grub.cfg after GRUB_CMDLINE_LINUX (info -f grub -n "Simple configuration").
import { kernelArgKey, kernelArgSyntax, missingKernelArgs, parseKernelArgs } from "../kernel/cmdline";
import { ShellListOwnership, ShellVariableSpec, findShellAssignments, planShellList, revertShellList, shellVariableValue } from "../text/shellVariable";
import { isRemovedBy } from "../text/tokenList";
import type { BootConfigCheck } from "./bootConfig";

export const GRUB_DEFAULTS_PATH = "/etc/default/grub";
export const GRUB_CFG_PATH = "/boot/grub/grub.cfg";

/**
 * Debian's update-grub puts GRUB_CMDLINE_LINUX_DEFAULT on the default entry, so that is the one
 * edited there. Fedora's grub2-mkconfig rewrites the `options` of every BLS entry from
 * GRUB_CMDLINE_LINUX (its update_bls_cmdline), so with BLS entries that is the one edited.
 */
export type GrubCmdlineVariable = "GRUB_CMDLINE_LINUX_DEFAULT" | "GRUB_CMDLINE_LINUX";

const cmdlineVariables: Record<GrubCmdlineVariable, ShellVariableSpec> = {
  GRUB_CMDLINE_LINUX_DEFAULT: { name: "GRUB_CMDLINE_LINUX_DEFAULT", source: GRUB_DEFAULTS_PATH, example: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"' },
  GRUB_CMDLINE_LINUX: { name: "GRUB_CMDLINE_LINUX", source: GRUB_DEFAULTS_PATH, example: 'GRUB_CMDLINE_LINUX=""' },
};
const cmdlineAll = cmdlineVariables.GRUB_CMDLINE_LINUX;

export interface ConfigFile {
  readonly path: string;
  readonly text: string;
}

export interface GrubDefaultsRequest {
  /** /etc/default/grub as read from the host. */
  readonly text: string;
  readonly ensure: readonly string[];
  readonly remove?: readonly string[];
  readonly previouslyOwned?: ShellListOwnership;
  /** Without previouslyOwned: the file as vfio-host saved it before its first edit, to recognise our own args in. */
  readonly backup?: string;
  /** /etc/default/grub.d/*.cfg, which update-grub sources after /etc/default/grub. */
  readonly dropIns?: readonly ConfigFile[];
}

export interface GrubDefaultsPlan {
  readonly text: string;
  readonly owned: ShellListOwnership;
  readonly changes: readonly string[];
  readonly warnings: readonly string[];
}

export function planGrubDefaults(request: GrubDefaultsRequest, variable: GrubCmdlineVariable = "GRUB_CMDLINE_LINUX_DEFAULT"): GrubDefaultsPlan {
  for (const dropIn of request.dropIns ?? []) {
    const overriding = findShellAssignments(dropIn.text, dropIn.path).find((a) => a.name === variable && !new RegExp(`\\$\\{?${variable}\\b`).test(a.raw));
    if (overriding) {
      throw new Error(
        `${dropIn.path} line ${overriding.line} sets ${variable}=${overriding.raw}; ${variable === "GRUB_CMDLINE_LINUX" ? "grub2-mkconfig" : "update-grub"} reads it after ` +
          `${GRUB_DEFAULTS_PATH}, so the arguments set there would be lost. Delete that line, or make it add to the value: ` +
          `${variable}="$${variable} ..."`,
      );
    }
  }
  const plan = planShellList(request.text, cmdlineVariables[variable], request, kernelArgSyntax);
  return { ...plan, warnings: variable === "GRUB_CMDLINE_LINUX_DEFAULT" ? cmdlineLinuxWarnings(plan.text, request) : [] };
}

/** GRUB_CMDLINE_LINUX comes first on the linux line and is the only part recovery entries get. */
function cmdlineLinuxWarnings(text: string, request: GrubDefaultsRequest): string[] {
  let always: string[];
  try {
    always = parseKernelArgs(shellVariableValue(text, cmdlineAll));
  } catch (unreadable) {
    return [`${(unreadable as Error).message} (only GRUB_CMDLINE_LINUX_DEFAULT is edited, so this is not fatal, but conflicts in GRUB_CMDLINE_LINUX go unchecked)`];
  }
  const warnings: string[] = [];
  for (const wanted of request.ensure) {
    for (const token of always.filter((t) => kernelArgKey(t) === kernelArgKey(wanted) && !kernelArgSyntax.satisfies(t, wanted))) {
      warnings.push(
        `GRUB_CMDLINE_LINUX in ${GRUB_DEFAULTS_PATH} carries ${token}; GRUB_CMDLINE_LINUX_DEFAULT comes after it on the ` +
          `default entry's linux line, so ${wanted} wins there, but recovery entries keep ${token}`,
      );
    }
  }
  for (const entry of request.remove ?? []) {
    for (const token of always.filter((t) => isRemovedBy(kernelArgSyntax, t, entry))) {
      warnings.push(
        `GRUB_CMDLINE_LINUX in ${GRUB_DEFAULTS_PATH} still carries ${token}, which \`remove\` names; ` +
          `this resource edits only GRUB_CMDLINE_LINUX_DEFAULT, so take it out of GRUB_CMDLINE_LINUX by hand`,
      );
    }
  }
  return warnings;
}

export function revertGrubDefaults(text: string, owned: ShellListOwnership, variable: GrubCmdlineVariable = "GRUB_CMDLINE_LINUX_DEFAULT"): string {
  return revertShellList(text, cmdlineVariables[variable], owned, kernelArgSyntax);
}

/** Whether GRUB_CMDLINE_LINUX carries the args, so that grub2-mkconfig keeps them in the BLS entries it rewrites. */
export function grubCmdlineLinuxHasArgs(text: string, args: readonly string[]): BootConfigCheck {
  const missing = missingKernelArgs(shellVariableValue(text, cmdlineAll), args);
  return missing.length === 0
    ? { ok: true, problems: [] }
    : { ok: false, problems: [`GRUB_CMDLINE_LINUX in ${GRUB_DEFAULTS_PATH} lacks ${missing.join(" ")}: grub2-mkconfig would rewrite the BLS entries without them`] };
}

/**
 * Checks the linux line(s) of the first menuentry of grub.cfg, the entry GRUB boots with the
 * stock GRUB_DEFAULT=0. Recovery entries are left out: they never get GRUB_CMDLINE_LINUX_DEFAULT.
 */
export function grubCfgHasArgs(grubCfgText: string, args: readonly string[]): BootConfigCheck {
  const lines = grubCfgText.split("\n");
  const first = lines.findIndex((line) => /^\s*menuentry\s/.test(line));
  if (first < 0) return { ok: false, problems: [`${GRUB_CFG_PATH} has no menuentry; run update-grub`] };
  const title = /^\s*menuentry\s+(?:'([^']*)'|"([^"]*)")/.exec(lines[first]);
  const name = title ? `'${title[1] ?? title[2]}'` : `at line ${first + 1}`;
  const problems: string[] = [];
  let depth = 0;
  let linuxLines = 0;
  for (let i = first; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line.endsWith("{")) depth++;
    if (line === "}" && --depth === 0) break;
    if (!/^linux(16|efi)?$/.test(parseKernelArgs(line)[0] ?? "")) continue;
    linuxLines++;
    // The command and the kernel's path never share a key with an arg, so the whole line can be checked.
    const missing = missingKernelArgs(line, args);
    if (missing.length > 0) {
      problems.push(`${GRUB_CFG_PATH}: the first menuentry (${name}) boots without ${missing.join(" ")} on its linux line (line ${i + 1}); run update-grub`);
    }
  }
  if (linuxLines === 0) problems.push(`${GRUB_CFG_PATH}: the first menuentry (${name}) has no linux line; run update-grub`);
  return { ok: problems.length === 0, problems };
}
