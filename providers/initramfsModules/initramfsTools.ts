// Debian/Ubuntu initramfs-tools: /etc/initramfs-tools/modules names one module per line (optional
// arguments after the name, `#` comments); `update-initramfs -u` copies them and their dependencies
// into the image and loads them early (initramfs.conf(5), initramfs-tools(7)).
import { moduleLineSyntax } from "../kernel/modules";
import { TokenOwnership, TokenPlan, planTokens, revertTokenText } from "../text/tokenList";

export const INITRAMFS_TOOLS_MODULES_PATH = "/etc/initramfs-tools/modules";

export interface InitramfsToolsRequest {
  readonly text: string;
  /** Module names as the kernel spells them, e.g. moduleListForKernel(...).map((m) => m.name). */
  readonly modules: readonly string[];
  readonly previouslyOwned?: TokenOwnership;
  /** Without previouslyOwned: the file as vfio-host saved it before its first edit, to recognise our own lines in. */
  readonly backup?: string;
}

export function planInitramfsToolsModules(request: InitramfsToolsRequest): TokenPlan {
  return planTokens(request.text, { ensure: request.modules, previouslyOwned: request.previouslyOwned, backup: request.backup }, moduleLineSyntax);
}

export function revertInitramfsToolsModules(text: string, owned: TokenOwnership): string {
  return revertTokenText(text, owned, moduleLineSyntax);
}
