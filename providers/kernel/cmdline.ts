// The kernel command line as tokens: KernelCmdline edits it with kernelArgSyntax, VfioBinding reads
// the stack's args, HostReboot checks /proc/cmdline. Parsing follows the kernel's own
// (lib/cmdline.c next_arg, Documentation/admin-guide/kernel-parameters.rst).
import { TokenSyntax, parseWhitespaceTokens } from "../text/tokenList";

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
