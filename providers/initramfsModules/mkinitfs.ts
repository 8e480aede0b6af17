// Alpine mkinitfs: a features.d/<name>.modules file is read only when <name> is listed in
// features= of /etc/mkinitfs/mkinitfs.conf (mkinitfs(1)); its lines are paths or globs under
// /lib/modules/<release>, `#` lines ignored, and mkinitfs adds each module's dependencies from
// modules.dep. /etc/modprobe.d/*.conf goes into the image with the stock `base` feature.
import { VfioModule } from "../kernel/modules";
import { ShellListOwnership, ShellListPlan, ShellVariableSpec, planShellList, revertShellList } from "../text/shellVariable";
import { wordSyntax } from "../text/tokenList";

export const MKINITFS_CONF_PATH = "/etc/mkinitfs/mkinitfs.conf";
export const VFIO_FEATURE = "vfio";
export const VFIO_FEATURE_MODULES_PATH = `/etc/mkinitfs/features.d/${VFIO_FEATURE}.modules`;

const features: ShellVariableSpec = {
  name: "features",
  source: MKINITFS_CONF_PATH,
  example: 'features="ata base ide scsi usb virtio ext4"',
  requiredMessage:
    `${MKINITFS_CONF_PATH} has no features= line, so mkinitfs would build an initramfs with nothing but vfio in it; ` +
    'put back the stock line first, e.g. features="ata base ide scsi usb virtio ext4"',
};

/** `backup`, without previouslyOwned: the file as vfio-host saved it before its first edit, to recognise our own word in. */
export function planMkinitfsFeatures(request: { readonly text: string; readonly previouslyOwned?: ShellListOwnership; readonly backup?: string }): ShellListPlan {
  return planShellList(request.text, features, { ensure: [VFIO_FEATURE], previouslyOwned: request.previouslyOwned, backup: request.backup }, wordSyntax);
}

export function revertMkinitfsFeatures(text: string, owned: ShellListOwnership): string {
  return revertShellList(text, features, owned, wordSyntax);
}

const FEATURE_HEADER = [
  "Managed by vfio-host (Pulumi InitramfsModules); changes here are overwritten.",
  `mkinitfs reads this file only while features= in ${MKINITFS_CONF_PATH} lists "${VFIO_FEATURE}".`,
];

/** The features.d file: one `.ko*` glob per loadable module, so a recompressed kernel still matches. */
export function renderVfioFeatureModules(modules: readonly VfioModule[]): string {
  const paths = modules.filter((m) => !m.builtin).map((m) => m.path.replace(/\.ko(\.[a-z0-9]+)?$/, ".ko*"));
  return [...FEATURE_HEADER.map((line) => `# ${line}`), ...paths].join("\n") + "\n";
}
