// The kernel command line as tokens: what KernelCmdline owns on it, and how to take that back.
// Parsing follows the kernel's own (lib/cmdline.c next_arg, Documentation/admin-guide/kernel-parameters.rst).
import {
  TokenOwnership,
  TokenSyntax,
  parseWhitespaceTokens,
  planTokens,
  revertTokenText,
} from "../text/tokenList";

/** The kernel strips one pair of double quotes around a whole arg or around its value. */
function unquoteArg(token: string): string {
  return token.startsWith('"') ? token.slice(1).replace(/"$/, "") : token;
}

export function kernelArgKey(token: string): string {
  const arg = unquoteArg(token);
  const eq = arg.indexOf("=");
  return eq < 0 ? arg : arg.slice(0, eq);
}

/** undefined for a bare flag such as `quiet`. */
export function kernelArgValue(token: string): string | undefined {
  const arg = unquoteArg(token);
  const eq = arg.indexOf("=");
  if (eq < 0) return undefined;
  const value = arg.slice(eq + 1);
  return value.startsWith('"') ? value.slice(1).replace(/"$/, "") : value;
}

export const kernelArgSyntax: TokenSyntax = {
  parse: parseWhitespaceTokens,
  separator: " ",
  key: kernelArgKey,
  satisfies: (token, wanted) => kernelArgValue(token) === kernelArgValue(wanted),
  // Everything after `--` goes to init, not to the kernel.
  end: (list) => {
    const dashes = list.tokens.indexOf("--");
    return dashes < 0 ? list.tokens.length : dashes;
  },
};

/** The args in the user's order, each exactly as written (`foo="a b"` stays one token). */
export function parseKernelArgs(line: string): string[] {
  return [...parseWhitespaceTokens(line).tokens];
}

export function formatKernelArgs(args: readonly string[]): string {
  return args.join(" ");
}

export interface KernelArgsRequest {
  readonly current: string;
  /** Args this resource owns, e.g. ["intel_iommu=on", "iommu=pt"]. */
  readonly ensure: readonly string[];
  /** Keys (all values) or exact `key=value` args to take off the line. */
  readonly remove?: readonly string[];
  /** The ownership a previous plan returned; pass it back so updates and deletes are exact. */
  readonly previouslyOwned?: TokenOwnership;
}

export interface KernelArgsPlan {
  readonly line: string;
  readonly owned: TokenOwnership;
  readonly changes: readonly string[];
}

export function planKernelArgs(request: KernelArgsRequest): KernelArgsPlan {
  const plan = planTokens(request.current, request, kernelArgSyntax);
  return { line: plan.text, owned: plan.owned, changes: plan.changes };
}

/** Gives back the line as it was before `planKernelArgs` returned `owned`. */
export function revertKernelArgs(line: string, owned: TokenOwnership): string {
  return revertTokenText(line, owned, kernelArgSyntax);
}

/**
 * Which of `args` are not in effect on `line`. For a repeated key the kernel acts on the last one
 * (each occurrence is parsed in order), so `intel_iommu=off ... intel_iommu=on` counts as on.
 */
export function missingKernelArgs(line: string, args: readonly string[]): string[] {
  const list = parseWhitespaceTokens(line);
  const kernelTokens = list.tokens.slice(0, kernelArgSyntax.end(list));
  return args.filter((wanted) => {
    const key = kernelArgKey(wanted);
    const last = [...kernelTokens].reverse().find((token) => kernelArgKey(token) === key);
    return last === undefined || kernelArgValue(last) !== kernelArgValue(wanted);
  });
}

/** The result of checking a generated boot config (grub.cfg, extlinux.conf) after the update tool ran. */
export interface BootConfigCheck {
  readonly ok: boolean;
  readonly problems: readonly string[];
}
