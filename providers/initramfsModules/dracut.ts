// dracut (Fedora/RHEL/openSUSE; Debian and Ubuntu as an alternative to initramfs-tools): a drop-in
// of our own in /etc/dracut.conf.d, read after /etc/dracut.conf in name order (dracut.conf(5)),
// the image rebuilt with `dracut --force`, and listed with `lsinitrd` to verify. Where
// kernel-install copies the image to a boot loader entry on the ESP (systemd-boot), that copy is
// what boots, so it is the one refreshed and listed.
import { VfioModule } from "../kernel/modules";

export const DRACUT_CONF_PATH = "/etc/dracut.conf.d/90-vfio-host.conf";

const HEADER = [
  "Managed by vfio-host (Pulumi InitramfsModules); changes here are overwritten.",
  // dracut.sh writes rd.driver.pre=<module> for each into the image's /etc/cmdline.d, so they load
  // before udev hands devices to their host drivers; add_drivers only puts the files in.
  "force_drivers: put in the image and loaded early, so vfio-pci claims its devices first.",
  // 90kernel-modules copies /etc/modprobe.d/*.conf only in hostonly mode (Fedora's default, not
  // Debian's); the items are expanded unquoted by dracut.sh, so the glob takes every file, as
  // hostonly mode would.
  "install_optional_items: /etc/modprobe.d (vfio-pci's ids= and softdeps), which dracut copies only in hostonly mode.",
];

/**
 * The whole drop-in: the loadable VFIO modules in load order (built-in ones need no file) and
 * modprobe.d. dracut.conf is sourced by bash: `+=` appends to what other files set, and the
 * spaces inside the quotes keep the words apart from theirs (dracut.conf(5)). Names use
 * underscores: dracut.sh turns only the first `-` of force_drivers into `_`.
 */
export function renderDracutVfioConf(modules: readonly VfioModule[]): string {
  const names = modules.filter((m) => !m.builtin).map((m) => m.name);
  const drivers = names.length > 0 ? [`force_drivers+=" ${names.join(" ")} "`] : [];
  return [...HEADER.map((line) => `# ${line}`), ...drivers, 'install_optional_items+=" /etc/modprobe.d/*.conf "'].join("\n") + "\n";
}

/**
 * Where the image of `$release` (NEXT_KERNEL's) is, as tagged lines: `entry <path>` for a boot
 * loader entry's copy on the ESP (kernel-install's layout <ESP>/<entry token>/<release>/initrd,
 * or .../initrd.img-<release> on Debian; the token from /etc/kernel/entry-token, else the machine
 * id), `image <path>` for /boot's
 * (Debian: initrd.img-<release>, Fedora: initramfs-<release>.img), in the order a listing should
 * prefer them; then the kernel image for `kernel-install add`, whether kernel-install is there, and
 * whether dracut's own kernel-install plugin is (Fedora ships it, Debian's dracut 059 does not).
 */
const DRACUT_IMAGE_SEARCH = `token=; [ -r /etc/kernel/entry-token ] && read -r token < /etc/kernel/entry-token
[ -n "$token" ] || { [ -r /etc/machine-id ] && read -r token < /etc/machine-id; }
# dracut's own plugin names the copy initrd; systemd's 90-loaderentry.install (Debian) keeps the name it was given.
for esp in /efi /boot/efi /boot; do
  for f in "$esp/$token/$release/initrd" "$esp/$token/$release/initrd.img-$release"; do
    [ -n "$token" ] && [ -f "$f" ] && echo "entry $f"
  done
done
for f in "/boot/initrd.img-$release" "/boot/initramfs-$release.img"; do [ -f "$f" ] && echo "image $f"; done`;

export const DRACUT_BOOT_SECTION = `${DRACUT_IMAGE_SEARCH}
for k in "/boot/vmlinuz-$release" "/lib/modules/$release/vmlinuz" "/usr/lib/modules/$release/vmlinuz"; do [ -f "$k" ] && echo "kernel $k"; done
command -v kernel-install >/dev/null && echo kernel-install
for p in /etc/kernel/install.d/50-dracut.install /usr/lib/kernel/install.d/50-dracut.install; do
  # A plugin in /etc linked to /dev/null masks the one in /usr/lib (kernel-install(8)).
  if [ "$(readlink "$p" 2>/dev/null)" = /dev/null ]; then echo "plugin masked"; break; fi
  [ -e "$p" ] && { echo "plugin $p"; break; }
done`;

/** Lists the image the next boot reads (the ESP entry's before /boot's), in lsinitrd's `ls -l` format, which missingFromInitramfs reads. */
export const DRACUT_LISTING = `image=$( { ${DRACUT_IMAGE_SEARCH}
} | awk '$1 == "entry" || $1 == "image" { print $2; exit }')
if [ -n "$image" ]; then lsinitrd "$image"; fi`;

export interface DracutBoot {
  /** The image the loader reads, undefined before dracut ever built one for this release. */
  readonly image: string | undefined;
  /** Run in order to rebuild it. */
  readonly rebuild: readonly (readonly string[])[];
}

/** `dracut --force --kver <release> [<image>]`: with an image, written exactly there instead of where dracut would guess. */
export function dracutRebuild(release: string, image?: string): string[] {
  return ["dracut", "--force", "--kver", release, ...(image ? [image] : [])];
}

/** `kernel-install add <release> <kernel>`: (re)installs the boot loader entry with its kernel and initrd on the ESP. */
export function kernelInstallAdd(release: string, kernelImage: string): string[] {
  return ["kernel-install", "add", release, kernelImage];
}

/**
 * Pure: where the image is and how to rebuild it, from DRACUT_BOOT_SECTION's lines.
 * - No ESP entry (GRUB, extlinux): `dracut --force --kver REL <image>`, to the /boot image the loader
 *   reads (named, since dracut would otherwise write to an ESP entry directory it finds).
 * - An ESP entry and dracut's kernel-install plugin (Fedora): `kernel-install add REL <kernel>`
 *   alone; the plugin builds the entry's initrd, with our drop-in.
 * - An ESP entry without it (Debian: systemd's 85-initrd.install copies /boot/initrd.img-REL into
 *   the entry): dracut to /boot/initrd.img-REL first, then `kernel-install add`. The order matters:
 *   a bare `dracut --force` would write the entry directly and kernel-install would then copy the
 *   stale /boot image over it.
 */
export function parseDracutBoot(section: string, release: string): DracutBoot {
  const tagged = (tag: string) => section.split("\n").filter((l) => l.startsWith(`${tag} `)).map((l) => l.slice(tag.length + 1).trim());
  const entry = tagged("entry")[0];
  const bootImage = tagged("image")[0];
  const kernelInstall = section.split("\n").includes("kernel-install");
  if (!entry || !kernelInstall) return { image: bootImage, rebuild: [dracutRebuild(release, bootImage)] };
  const kernel = tagged("kernel")[0] ?? `/boot/vmlinuz-${release}`;
  const plugin = tagged("plugin")[0];
  if (plugin !== undefined && plugin !== "masked") return { image: entry, rebuild: [kernelInstallAdd(release, kernel)] };
  return { image: entry, rebuild: [dracutRebuild(release, bootImage ?? `/boot/initrd.img-${release}`), kernelInstallAdd(release, kernel)] };
}
