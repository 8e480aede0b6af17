#!/usr/bin/env bash
# Builds the lab's golden image: Debian bookworm that boots from its own GRUB, as a compressed
# qcow2 base for throwaway overlays. Called by `lab.sh up` (which keys OUT by a hash of this file,
# guest/ and the apt sources), not directly:
#   build-image.sh OUT APT_SOURCES QEMU_ACCEL_ARGS...
# OUT appears only when complete: base.qcow2, ssh_host_ed25519_key.pub (the key lab.json pins),
# lab-guest.sha256 (of the guest image inside, see below) and firstboot.log (the serial log of the
# boot that installed GRUB).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1 sources=$2
shift 2
accel=("$@")
log() { echo "[lab build] $*" >&2; }

packages=(
  linux-image-amd64 grub-pc initramfs-tools systemd-sysv kmod
  openssh-server sudo zstd pciutils usbutils iproute2
  libvirt-daemon-system qemu-system-x86 qemu-utils ovmf virtinst
  dosfstools mtools xz-utils
)
disk_mib=8192

work="$out.partial"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
root="$work/root"
started=$SECONDS

log "mmdebstrap bookworm from $sources"
mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$root" "$sources"

cp -a "$here/guest/." "$root/"
# Start like a host that has not been configured yet: Debian's kernel turns the Intel IOMMU on by
# default when one is present, so the lab says off explicitly; the serial console keeps logs readable.
sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=0/' \
  -e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=off console=ttyS0"/' \
  "$root/etc/default/grub"
grep -qx 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=off console=ttyS0"' "$root/etc/default/grub"
# MODULES=most makes every update-initramfs take minutes under TCG; dep takes what this guest uses.
sed -i -e 's/^MODULES=.*/MODULES=dep/' -e 's/^#\? *COMPRESS=.*/COMPRESS=zstd/' "$root/etc/initramfs-tools/initramfs.conf"
grep -qx 'MODULES=dep' "$root/etc/initramfs-tools/initramfs.conf"
echo vfio-lab >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvfio-lab\n' >"$root/etc/hosts"
echo 'LABEL=lab-root / ext4 errors=remount-ro 0 1' >"$root/etc/fstab"
systemctl --quiet --root="$root" enable systemd-networkd.service lab-authorized-keys.service lab-firstboot.service
# apt cannot reach a mirror from the lab (restrict=on); its timers would only burn emulated CPU.
systemctl --quiet --root="$root" mask apt-daily.timer apt-daily-upgrade.timer
# The libvirt guest never uses nested KVM: under TCG the lab's CPU has no svm/vmx anyway, and under
# KVM a nested guest holding a passed-through emulated controller brought the lab's QEMU down.
printf 'blacklist kvm_intel\nblacklist kvm_amd\ninstall kvm_intel /bin/false\ninstall kvm_amd /bin/false\n' >"$root/etc/modprobe.d/lab-no-nested-kvm.conf"

# The lab guest's disk image, made here, nothing downloaded: an EFI system partition whose
# startup.nsh makes OVMF's shell list the PCI devices the guest sees on its serial console (`virsh
# console`; type `pci` there to list them again), then idle at the shell's prompt, which halts the
# CPU. The lab stack imports it compressed, checked against the sha256 recorded beside the image.
guest="$work/lab-guest.raw"
truncate -s 32M "$guest"
echo 'start=2048, size=61440, type=U' | sfdisk --quiet --label gpt "$guest"
printf '%s\r\n' '@echo -off' 'echo "vfio-host lab guest: the PCI devices it sees"' 'pci' >"$root/startup.nsh"
chroot "$root" sh -c 'mkfs.vfat -C -n LABGUEST /esp.img 30720 >/dev/null && mcopy -i /esp.img /startup.nsh ::/startup.nsh'
dd if="$root/esp.img" of="$guest" bs=1M seek=1 conv=notrunc status=none
rm "$root/esp.img" "$root/startup.nsh"
mkdir -p "$root/srv/vfio-host"
qemu-img convert -O qcow2 "$guest" "$work/lab-guest.qcow2"
xz -9 -c "$work/lab-guest.qcow2" >"$root/srv/vfio-host/lab-guest.qcow2.xz"
rm "$guest" "$work/lab-guest.qcow2"
sha256sum <"$root/srv/vfio-host/lab-guest.qcow2.xz" | cut -d' ' -f1 >"$work/lab-guest.sha256"

rm -f "$root"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C root@vfio-lab -f "$root/etc/ssh/ssh_host_ed25519_key"
cp "$root/etc/ssh/ssh_host_ed25519_key.pub" "$work/"

# Loop partitions do not appear here, so the file system is written straight into the partition.
disk="$work/disk.raw"
truncate -s "${disk_mib}M" "$disk"
echo 'start=2048, type=83, bootable' | sfdisk --quiet --label dos "$disk"
mke2fs -q -t ext4 -L lab-root -d "$root" -E offset=1048576 "$disk" "$(((disk_mib - 1) * 1024))k"

log "first boot (direct kernel): grub-install, update-initramfs, update-grub"
kernel=$(find "$root/boot" -name 'vmlinuz-*' | sort -V | tail -n1)
timeout 1800 qemu-system-x86_64 "${accel[@]}" -machine q35 -m 1536 -smp 2 -nodefaults -display none \
  -no-reboot -serial "file:$work/firstboot.log" -drive "file=$disk,format=raw,if=virtio" \
  -kernel "$kernel" -initrd "${kernel/vmlinuz/initrd.img}" -append "root=/dev/vda1 rw console=ttyS0 lab.firstboot" ||
  true
if ! grep -q LAB-FIRSTBOOT-OK "$work/firstboot.log"; then
  tail -n 40 "$work/firstboot.log" >&2
  log "the first boot did not finish (serial log above)"
  exit 1
fi
rm -rf "$root"

qemu-img convert -c -O qcow2 -o compression_type=zstd "$disk" "$work/base.qcow2"
rm "$disk"
chmod 444 "$work/base.qcow2"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
log "image ready in $((SECONDS - started)) s: $out/base.qcow2 ($(du -m "$out/base.qcow2" | cut -f1) MiB)"
