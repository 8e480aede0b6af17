// The boot loader's generated config (grub.cfg, extlinux.conf), regenerated from the source file
// KernelCmdline edits and checked for the args. KernelCmdline does it after its edit, and a trial
// boot's commit after it wrote the staged /etc/default/grub.
import type { RemoteHost } from "../ssh/host";
import { EXTLINUX_CONF_PATH, extlinuxCfgHasArgs, UPDATE_EXTLINUX_CONF_PATH } from "./extlinux";
import { GRUB_CFG_PATH, GRUB_DEFAULTS_PATH, grubCfgHasArgs } from "./grub";
import type { KernelCmdlineInputs } from "./schema";

export type Backend = "grub" | "extlinux";

/** The result of checking a generated boot config (grub.cfg, extlinux.conf) after the update tool ran. */
export interface BootConfigCheck {
  readonly ok: boolean;
  readonly problems: readonly string[];
}

export const backends = {
  grub: {
    source: GRUB_DEFAULTS_PATH,
    generated: GRUB_CFG_PATH,
    // update-grub is Debian's wrapper; elsewhere grub-mkconfig writes the same file.
    regenerate: ["sh", "-c", `if command -v update-grub >/dev/null; then update-grub; else grub-mkconfig -o ${GRUB_CFG_PATH}; fi`],
    regenerateName: "update-grub",
    verify: (generated: string, inputs: KernelCmdlineInputs) => grubCfgHasArgs(generated, inputs.args),
  },
  extlinux: {
    source: UPDATE_EXTLINUX_CONF_PATH,
    generated: EXTLINUX_CONF_PATH,
    regenerate: ["update-extlinux"],
    regenerateName: "update-extlinux",
    verify: (generated: string, inputs: KernelCmdlineInputs) => extlinuxCfgHasArgs(generated, inputs.args, inputs.modules),
  },
} as const;

const REGENERATE_TIMEOUT_MS = 10 * 60_000;

/** Runs the backend's update tool, which writes the generated config from the source file. */
export async function regenerate(host: RemoteHost, backend: Backend): Promise<void> {
  await host.run(backends[backend].regenerate, { timeoutMs: REGENERATE_TIMEOUT_MS });
}

/** Regenerates the boot config from the source file and checks it; the failure, described, or undefined. */
export async function regenerateAndVerify(host: RemoteHost, backend: Backend, check: (generated: string) => BootConfigCheck): Promise<string | undefined> {
  const b = backends[backend];
  try {
    await regenerate(host, backend);
  } catch (err) {
    return `${b.regenerateName} failed: ${(err as Error).message}`;
  }
  const verdict = check((await host.readFile(b.generated))?.toString("utf8") ?? "");
  return verdict.ok ? undefined : `${b.generated} lacks the arguments after ${b.regenerateName}: ${verdict.problems.join("; ")}`;
}
