// /etc/kernel/cmdline: the args that kernel-install's 90-loaderentry.install writes into each new
// Boot Loader Specification entry (systemd-boot; it joins all lines: `tr -s "$IFS" ' '`), and that
// proxmox-boot-tool refresh writes into the `options` of every loader/entries/proxmox-*.conf on its
// ESPs (zz-proxmox-boot: `CMDLINE=$(get_first_line /etc/kernel/cmdline)`, refused without root=).
import { kernelArgSyntax } from "../kernel/cmdline";
import { parseWhitespaceTokens, planTokens, revertTokenText, TokenOwnership, TokenPlan, TokenSyntax } from "../text/tokenList";

export const KERNEL_CMDLINE_PATH = "/etc/kernel/cmdline";

/** proxmox-boot-tool copies the kernels to its ESPs and rewrites their entries from /etc/kernel/cmdline. */
export const proxmoxBootToolRefresh = ["proxmox-boot-tool", "refresh"] as const;

/**
 * The args as tokens of the whole file. A file without args ("" or a lone newline) keeps its
 * whitespace after the first arg added, so "\n" becomes "iommu=pt\n", not "\niommu=pt": the
 * args stay on the first line, the only one proxmox-boot-tool reads.
 */
const kernelCmdlineFileSyntax: TokenSyntax = {
  ...kernelArgSyntax,
  parse: (text) => {
    const list = parseWhitespaceTokens(text);
    return list.tokens.length > 0 ? list : { leading: "", tokens: [], separators: [], trailing: text };
  },
};

export interface KernelCmdlineFileRequest {
  /**
   * /etc/kernel/cmdline as read from the host. When it does not exist, pass kernelCmdlineSeed of
   * /proc/cmdline: that is what kernel-install would have used, and a file with our args alone
   * would boot the next kernel without root=.
   */
  readonly text: string;
  readonly ensure: readonly string[];
  readonly remove?: readonly string[];
  readonly previouslyOwned?: TokenOwnership;
  /** Without previouslyOwned: the file as vfio-host saved it before its first edit, to recognise our own args in. */
  readonly backup?: string;
}

/** Throws when args sit anywhere but the first line: proxmox-boot-tool would not see them, kernel-install would. */
function checkOneLine(text: string): void {
  const list = parseWhitespaceTokens(text);
  const breaks = [list.leading, ...list.separators].findIndex((space) => space.includes("\n"));
  if (list.tokens.length === 0 || breaks < 0) return;
  throw new Error(
    `${KERNEL_CMDLINE_PATH} has arguments on more than one line (the line break ${breaks === 0 ? "before the first argument" : `after "${list.tokens[breaks - 1]}"`}); ` +
      `proxmox-boot-tool reads only the first line while kernel-install joins them all, so the two would boot different command lines. ` +
      `Put all the arguments on one line, e.g. "${list.tokens.join(" ")}"`,
  );
}

export function planKernelCmdlineFile(request: KernelCmdlineFileRequest): TokenPlan {
  checkOneLine(request.text);
  return planTokens(request.text, request, kernelCmdlineFileSyntax);
}

export function revertKernelCmdlineFile(text: string, owned: TokenOwnership): string {
  return revertTokenText(text, owned, kernelCmdlineFileSyntax);
}

/**
 * What kernel-install uses when neither /etc/kernel/cmdline nor /usr/lib/kernel/cmdline exists:
 * /proc/cmdline without the BOOT_IMAGE= and initrd= the boot loader put there (90-loaderentry.install).
 */
export function kernelCmdlineSeed(procCmdline: string): string {
  const args = parseWhitespaceTokens(procCmdline).tokens.filter((t) => !t.startsWith("BOOT_IMAGE=") && !t.startsWith("initrd="));
  return `${args.join(" ")}\n`;
}
