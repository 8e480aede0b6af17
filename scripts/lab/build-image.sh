#!/usr/bin/env bash
# Builds the lab's golden image: Debian bookworm that boots from its own GRUB, as a compressed
# qcow2 base for throwaway overlays. Called by `lab.sh up` (which keys OUT by a hash of this file,
# guest/ and the apt sources), not directly:
#   build-image.sh OUT APT_SOURCES QEMU_ACCEL_ARGS...
# OUT appears only when complete: base.qcow2, ssh_host_ed25519_key.pub (the key lab.json pins),
# lab-guest.sha256 (of the guest image inside, see below) and firstboot.log (the serial log of the
# boot that installed GRUB).
#@flavor sdboot-dracut extlinux
#
# Flavours (lab.sh --flavor): lines between `#@flavor NAME...` and `#@end` belong to those flavours
# only. lab.sh runs the lines of one flavour and keys its image by exactly those lines, so a change
# to one flavour rebuilds only its image. The text above describes the grub flavour; the
# others leave out libvirt and the lab guest (no lab-guest.sha256), and boot from:
#   sdboot-dracut  UEFI: systemd-boot on an ESP (partition 2, mounted at /boot/efi), a dracut
#                  initramfs, loader entries written by kernel-install from /etc/kernel/cmdline;
#   extlinux       BIOS: extlinux and syslinux's MBR, an initramfs-tools initramfs, the one
#                  entry in /boot/extlinux/extlinux.conf written here (Debian has no tool for it).
#@end
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1 sources=$2
shift 2
accel=("$@")
log() { echo "[lab build] $*" >&2; }

#@flavor grub
packages=(
  linux-image-amd64 grub-pc initramfs-tools systemd-sysv kmod
  openssh-server sudo zstd pciutils usbutils iproute2
  libvirt-daemon-system qemu-system-x86 qemu-utils ovmf virtinst
  dosfstools mtools xz-utils
)
#@end
#@flavor sdboot-dracut extlinux
packages=(
  linux-image-amd64 systemd-sysv kmod
  openssh-server sudo zstd pciutils usbutils iproute2
)
#@end
#@flavor sdboot-dracut
# dracut replaces initramfs-tools (they conflict); dosfstools makes the ESP below.
packages+=(systemd-boot dracut dosfstools)
esp_mib=256
#@end
#@flavor extlinux
packages+=(extlinux syslinux-common initramfs-tools)
#@end
disk_mib=8192

work="$out.partial"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
root="$work/root"
started=$SECONDS

# Debian's kernel hooks (/etc/kernel/postinst.d/initramfs-tools or dracut) would build a generic
# initramfs of every module while the packages install (dracut twice, for the kernel and again on
# its trigger): a minute of CPU each for initramfs-tools, minutes for dracut. INITRD=No makes them
# skip it; the first boot needs only the disk and the root file system, in a small one built below,
# and builds the guest's own.
export INITRD=No
log "mmdebstrap bookworm from $sources"
mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$root" "$sources"

cp -a "$here/guest/." "$root/"
#@flavor sdboot-dracut
cp -a "$here/guest-sdboot-dracut/." "$root/"
#@end
#@flavor extlinux
cp -a "$here/guest-extlinux/." "$root/"
#@end
# Start like a host that has not been configured yet: Debian's kernel turns the Intel IOMMU on by
# default when one is present, so the lab says off explicitly; the serial console keeps logs readable.
# no_timer_check: a TCG guest starved of CPU (labs side by side on 2 cores) can miss the ticks the
# kernel's early timer check waits for, and with interrupt remapping on that check panics ("timer
# doesn't work through Interrupt-remapped IO-APIC", seen in CI); QEMU's timer does work.
#@flavor grub
sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=0/' \
  -e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=off console=ttyS0 no_timer_check"/' \
  "$root/etc/default/grub"
grep -qx 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=off console=ttyS0 no_timer_check"' "$root/etc/default/grub"
#@end
# The image has one kernel.
kernel_version=$(basename "$(find "$root/boot" -name 'vmlinuz-*' | sort -V | tail -n1)")
kernel_version=${kernel_version#vmlinuz-}
#@flavor sdboot-dracut extlinux
cmdline='root=LABEL=lab-root ro intel_iommu=off console=ttyS0 no_timer_check'
#@end
#@flavor sdboot-dracut
# kernel-install(8) writes this line into each loader entry's `options`.
echo "$cmdline" >"$root/etc/kernel/cmdline"
#@end
#@flavor extlinux
# syslinux's SERIAL directive puts the loader's own messages on the serial log too; paths are on
# the file system extlinux is installed in (the root), see extlinux(1) and syslinux.cfg(5).
mkdir -p "$root/boot/extlinux"
cat >"$root/boot/extlinux/extlinux.conf" <<EOF
SERIAL 0 115200
DEFAULT debian
PROMPT 0
TIMEOUT 0

LABEL debian
  LINUX /boot/vmlinuz-$kernel_version
  INITRD /boot/initrd.img-$kernel_version
  APPEND $cmdline
EOF
#@end
#@flavor grub extlinux
# MODULES=most makes every update-initramfs take minutes under TCG; dep takes what this guest uses.
sed -i -e 's/^MODULES=.*/MODULES=dep/' -e 's/^#\? *COMPRESS=.*/COMPRESS=zstd/' "$root/etc/initramfs-tools/initramfs.conf"
grep -qx 'MODULES=dep' "$root/etc/initramfs-tools/initramfs.conf"
# zstd at initramfs-tools' level 9 took 8 s of each rebuild under TCG, at level 1 one second.
echo 'COMPRESSLEVEL=1' >>"$root/etc/initramfs-tools/initramfs.conf"
#@end
# No address-space randomisation in the lab (a lab-only setting, not one the project writes):
# QEMU 7.2's TCG keys its translated code by virtual address, so every program start with shared
# libraries at new addresses translated them again. Measured in the GRUB lab: 100 starts of
# /bin/true 3.8 s against 1.3, update-initramfs 68 against 25 CPU-s of the lab's QEMU, a preview's
# reads 17 against 10.5.
mkdir -p "$root/etc/sysctl.d"
echo 'kernel.randomize_va_space = 0' >"$root/etc/sysctl.d/50-lab-no-aslr.conf"
echo vfio-lab >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvfio-lab\n' >"$root/etc/hosts"
echo 'LABEL=lab-root / ext4 errors=remount-ro 0 1' >"$root/etc/fstab"
#@flavor sdboot-dracut
# Where Debian's installer mounts the ESP; bootctl and kernel-install find it there.
echo 'LABEL=LAB-ESP /boot/efi vfat umask=0077 0 1' >>"$root/etc/fstab"
mkdir -p "$root/boot/efi"
#@end
# The image's initramfs, built here at native speed: the virtio disk and ext4, which is all its
# boots need. In the chroot there is no /proc or /sys, so nothing could look at a host for
# MODULES=dep or dracut's hostonly mode; the first boot used to rebuild it that way, which took
# 104 to 150 s of TCG per image beside the CLI's build in a cold setup (update-initramfs, dracut;
# the GRUB image alone: 233 s against 205 now) and bought nothing: the first change a
# suite makes rebuilds it in the guest with the image's own configuration, as on a host.
log "the image's initramfs (the boot disk's drivers only)"
#@flavor grub extlinux
cp -a "$root/etc/initramfs-tools" "$root/tmp/initramfs-image"
# FSTYPE: the fsck hook cannot look up the root's type without /proc; the guest's own build finds ext4.
printf 'MODULES=list\nFSTYPE=ext4\n' >>"$root/tmp/initramfs-image/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk ext4 >>"$root/tmp/initramfs-image/modules"
chroot "$root" mkinitramfs -d /tmp/initramfs-image -o "/boot/initrd.img-$kernel_version" "$kernel_version"
rm -r "$root/tmp/initramfs-image"
#@end
#@flavor sdboot-dracut
chroot "$root" dracut --quiet --no-hostonly --drivers "virtio_pci virtio_blk" --filesystems ext4 \
  --force "/boot/initrd.img-$kernel_version" "$kernel_version"
#@end
systemctl --quiet --root="$root" enable systemd-networkd.service lab-authorized-keys.service lab-firstboot.service
# root lingers: its systemd --user instance starts once at boot instead of at every SSH login (and
# stops 10 s after the last), which cost the TCG guest about 2.4 CPU-s per connection, measured; a
# pulumi run is one connection, and the tests and lab.sh make many.
mkdir -p "$root/var/lib/systemd/linger"
touch "$root/var/lib/systemd/linger/root"
# apt cannot reach a mirror from the lab (restrict=on); its timers would only burn emulated CPU.
systemctl --quiet --root="$root" mask apt-daily.timer apt-daily-upgrade.timer
#@flavor grub
# The libvirt guest never uses nested KVM: under TCG the lab's CPU has no svm/vmx anyway, and under
# KVM a nested guest holding a passed-through emulated controller brought the lab's QEMU down.
printf 'blacklist kvm_intel\nblacklist kvm_amd\ninstall kvm_intel /bin/false\ninstall kvm_amd /bin/false\n' >"$root/etc/modprobe.d/lab-no-nested-kvm.conf"

# The lab guest's disk image, made here, nothing downloaded: an EFI system partition whose
# removable-media loader (\EFI\BOOT\BOOTX64.EFI, the few instructions below, assembled by the
# build machine's binutils) prints one line on the serial console (`virsh console`), stops the
# timers the firmware left running and halts the CPU with interrupts off. The guest only has to run
# and hold its controller: OVMF's shell, which it booted before, kept a third of a lab vCPU busy at
# its prompt, and reaching it took 44 CPU-seconds of the lab against 37 for this. With OVMF's timers
# left ticking, the lab's libvirt QEMU woke about 280 times a second for interrupts the halted CPU
# never takes, and every lab preview took twice as long beside it (55 s against 27, 2026-12-04).
# The lab stack imports it compressed, checked against the sha256 recorded beside the image.
guest="$work/lab-guest.raw"
truncate -s 32M "$guest"
echo 'start=2048, size=61440, type=U' | sfdisk --quiet --label gpt "$guest"
as --64 -o "$work/halt.o" - <<'EOF_ASM'
	.globl	_start
_start:
	sub	$40, %rsp              # the shadow space of the UEFI (Microsoft x64) calling convention
	mov	0x40(%rdx), %rcx       # the system table's ConOut
	lea	message(%rip), %rdx
	call	*8(%rcx)               # ConOut->OutputString(ConOut, message)
	cli
	mov	$0xfee00000, %eax      # the local APIC, memory-mapped (OVMF leaves it in xAPIC mode)
	movl	$0x10000, 0x320(%rax)  # its timer's LVT entry masked
	movl	$0, 0x380(%rax)        # and its initial count 0: stopped
	mov	$0x30, %al             # the PIT's channel 0 to mode 0, a one-shot that ends
	out	%al, $0x43
	xor	%eax, %eax
	out	%al, $0x40
	out	%al, $0x40
	mov	$0xfed00000, %eax      # the HPET (q35): its counter and timers disabled
	movl	$0, 0x10(%rax)
1:	hlt
	jmp	1b
	.balign	2
message:
	.string16 "vfio-host lab guest: running, holding its passed-through controller; CPU halted\r\n"
EOF_ASM
ld -m i386pep --subsystem 10 -e _start --no-insert-timestamp -s -o "$root/BOOTX64.EFI" "$work/halt.o"
chroot "$root" sh -c 'mkfs.vfat -C -n LABGUEST /esp.img 30720 >/dev/null && mmd -i /esp.img ::/EFI ::/EFI/BOOT && mcopy -i /esp.img /BOOTX64.EFI ::/EFI/BOOT/BOOTX64.EFI'
dd if="$root/esp.img" of="$guest" bs=1M seek=1 conv=notrunc status=none
rm "$root/esp.img" "$root/BOOTX64.EFI" "$work/halt.o"
mkdir -p "$root/srv/vfio-host"
qemu-img convert -O qcow2 "$guest" "$work/lab-guest.qcow2"
xz -9 -c "$work/lab-guest.qcow2" >"$root/srv/vfio-host/lab-guest.qcow2.xz"
rm "$guest" "$work/lab-guest.qcow2"
sha256sum <"$root/srv/vfio-host/lab-guest.qcow2.xz" | cut -d' ' -f1 >"$work/lab-guest.sha256"
#@end
#@flavor sdboot-dracut
# An empty FAT ESP, made with the guest's mkfs.vfat as the lab guest's is; bootctl fills it at first boot.
chroot "$root" mkfs.vfat -F 32 -n LAB-ESP -C /esp.img $((esp_mib * 1024)) >/dev/null
mv "$root/esp.img" "$work/esp.img"
#@end

rm -f "$root"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C root@vfio-lab -f "$root/etc/ssh/ssh_host_ed25519_key"
cp "$root/etc/ssh/ssh_host_ed25519_key.pub" "$work/"

# Loop partitions do not appear here, so the file system is written straight into the partition.
disk="$work/disk.raw"
truncate -s "${disk_mib}M" "$disk"
#@flavor grub extlinux
echo 'start=2048, type=83, bootable' | sfdisk --quiet --label dos "$disk"
#@end
#@flavor sdboot-dracut
# GPT with the ESP after the root file system, so the root stays partition 1 at the offset and size
# of the BIOS flavours; the last MiB holds GPT's backup header.
truncate -s "$((disk_mib + esp_mib + 1))M" "$disk"
printf 'start=2048, size=%d, type=L, name=lab-root\nstart=%d, size=%d, type=U, name=ESP\n' \
  $(((disk_mib - 1) * 2048)) $((disk_mib * 2048)) $((esp_mib * 2048)) | sfdisk --quiet --label gpt "$disk"
dd if="$work/esp.img" of="$disk" bs=1M seek="$disk_mib" conv=notrunc status=none
rm "$work/esp.img"
#@end
mke2fs -q -t ext4 -L lab-root -d "$root" -E offset=1048576 "$disk" "$(((disk_mib - 1) * 1024))k"

#@flavor grub
log "first boot (direct kernel): grub-install, update-grub"
#@end
#@flavor sdboot-dracut
log "first boot (direct kernel): bootctl install, kernel-install"
#@end
#@flavor extlinux
log "first boot (direct kernel): extlinux --install, syslinux MBR"
#@end
timeout 1800 qemu-system-x86_64 "${accel[@]}" -machine q35 -m 1536 -smp 2 -nodefaults -display none \
  -no-reboot -serial "file:$work/firstboot.log" -drive "file=$disk,format=raw,if=virtio" \
  -kernel "$root/boot/vmlinuz-$kernel_version" -initrd "$root/boot/initrd.img-$kernel_version" -append "root=/dev/vda1 rw console=ttyS0 lab.firstboot" ||
  true
if ! grep -q LAB-FIRSTBOOT-OK "$work/firstboot.log"; then
  tail -n 40 "$work/firstboot.log" >&2
  log "the first boot did not finish (serial log above)"
  exit 1
fi
rm -rf "$root"

#@flavor sdboot-dracut extlinux
log "compressing the image"
#@end
qemu-img convert -c -O qcow2 -o compression_type=zstd "$disk" "$work/base.qcow2"
rm "$disk"
chmod 444 "$work/base.qcow2"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
log "image ready in $((SECONDS - started)) s: $out/base.qcow2 ($(du -m "$out/base.qcow2" | cut -f1) MiB)"
