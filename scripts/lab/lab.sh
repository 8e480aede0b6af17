#!/usr/bin/env bash
# The lab host: a Debian VM under QEMU shaped like a VFIO passthrough host (q35, emulated Intel
# IOMMU, four ICH9 USB controllers in one PCI slot), so host tests run against a real kernel.
#
#   npm run lab -- up | down | ssh [-- CMD...] | reset | status | build | recipe | apt-sources [--flavor NAME]
#
# up      build the image if needed, boot, wait until SSH answers, write lab.json
# down    power the VM off (SIGTERM/SIGKILL by its recorded PID if it does not go)
# ssh     run CMD (or a login shell) in the VM, the host key pinned
# reset   discard all changes and the key pair: a fresh overlay, rebooted if it was running
# status  say whether it runs and print lab.json, or the image it would boot
# build   only build (or find) the cached image and print its directory
# recipe  print the build script as this flavour runs it (build-image.sh's lines for it)
# apt-sources  print the apt sources file the image is built from (see apt_sources)
#
# Flavours (--flavor NAME, or LAB_FLAVOR=NAME): the boot stack the image boots with. All boot the
# same QEMU machine; only grub carries libvirt and the lab guest for the VM half of the tests.
#   grub           BIOS, GRUB, initramfs-tools (the default)
#   sdboot-dracut  UEFI (Debian's OVMF, this instance's own EFI variables), systemd-boot,
#                  dracut, loader entries by kernel-install from /etc/kernel/cmdline
#   extlinux       BIOS, extlinux with syslinux's MBR, initramfs-tools
#
# Image:  ${VFIO_HOST_CACHE:-~/.cache/vfio-host}/lab-<hash>/base.qcow2 for grub, lab-<flavour>-<hash>/
#         for the others, keyed by build-image.sh's lines for the flavour, guest/ (and
#         guest-<flavour>/) and the apt sources it installs from.
# State:  $cache/lab-state/ (grub) or $cache/lab-state-<flavour>/: id_ed25519 (this instance's key),
#         overlay.qcow2, efivars.fd (UEFI flavours), qemu.pid, serial.log, and while the VM runs
#         lab.json: {host, port, user, privateKeyPath, hostKey, pid, accel, flavor, overlay, image,
#         serialLog, bootSeconds, startedAt}.
# Env:    LAB_STATE (instance dir, default as above), LAB_ACCEL=auto|kvm|tcg, LAB_BOOT_TIMEOUT (seconds),
#         LAB_APT_SOURCES (a Debian bookworm sources file, deb822 .sources or one-line .list, used as it is),
#         LAB_APT_ROOT (the root whose etc/apt and etc/os-release are read, default /; tests point it at fixtures).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VFIO_HOST_CACHE:-$HOME/.cache/vfio-host}
boot_timeout=${LAB_BOOT_TIMEOUT:-600}
flavors="grub sdboot-dracut extlinux"
log() { echo "[lab] $*" >&2; }
die() {
  log "$*"
  exit 1
}

# Prints the entries of one apt sources file (FORMAT deb822 or one-line, see sources.list(5)) that
# name the Debian bookworm archive: a `deb` entry, enabled, not a cdrom, every suite bookworm or
# bookworm-*, component main. Exits 0 when every entry does, 1 when some do, 2 when none.
# With WANT=suites it prints the suites of every entry instead, and exits 0.
bookworm_entries() {
  local want=$1 file=$2 format=one-line
  [ "${file##*.}" = sources ] && format=deb822
  awk -v want="$want" -v format="$format" '
    function words(s) { gsub(/[ \t]+/, " ", s); return " " s " " }
    function entry(text, types, uris, suites, components, enabled,    n, s, i, usable) {
      entries++
      if (want == "suites") { printf "%s", words(suites); return }
      n = split(suites, s, /[ \t]+/)
      usable = tolower(enabled) != "no" && words(types) ~ / deb / && words(components) ~ / main / &&
        words(uris) !~ / cdrom:/ && n > 0
      for (i = 1; i <= n; i++) if (s[i] !~ /^bookworm([-\/].*)?$/) usable = 0
      # deb822 stanzas need the empty line between them.
      if (usable) printf "%s%s", (ok++ && format == "deb822" ? "\n" : ""), text
    }
    function stanza_end() {
      if (fields) entry(text, field["types"], field["uris"], field["suites"], field["components"], field["enabled"])
      text = ""; fields = 0; key = ""; split("", field)
    }
    # deb822: stanzas apart by empty lines; "#" starts a comment line; indented lines continue a field.
    format == "deb822" {
      if ($0 ~ /^[ \t]*$/) { stanza_end(); next }
      text = text $0 "\n"
      if ($0 ~ /^#/) next
      if ($0 ~ /^[ \t]/) { if (key != "") field[key] = field[key] " " $0; next }
      key = tolower($0); sub(/:.*/, "", key)
      value = $0; sub(/^[^:]*:[ \t]*/, "", value)
      field[key] = value; fields++
      next
    }
    # One-line: TYPE [OPTIONS] URI SUITE COMPONENT...; "#" anywhere starts a comment.
    {
      line = $0; sub(/#.*/, "", line); gsub(/^[ \t]+|[ \t]+$/, "", line)
      if (line == "") next
      n = split(line, w, /[ \t]+/)
      i = 2
      if (w[2] ~ /^\[/) { while (i < n && w[i] !~ /\]$/) i++; i++ }
      components = ""
      for (c = i + 2; c <= n; c++) components = components " " w[c]
      entry($0 "\n", w[1], w[i], w[i + 1], components, "")
    }
    END {
      if (format == "deb822") stanza_end()
      exit want == "suites" ? 0 : ok == 0 ? 2 : ok < entries ? 1 : 0
    }' "$file"
}

# The image is Debian bookworm from this machine's own mirror. apt reads deb822
# sources.list.d/*.sources (Debian 12 containers, Debian 13, Ubuntu 24.04), the one-line
# sources.list (Debian 12's installer) and sources.list.d/*.list; the first of these files with a
# bookworm entry is used. A file that holds nothing else goes to mmdebstrap as it is, so the image
# key stays the hash of the same bytes; otherwise only its bookworm entries, copied into the cache,
# since mmdebstrap's apt would fail on a cdrom, another release or a repository without its key.
# mmdebstrap(1) reads a .sources file as deb822 and a .list file as one-line.
apt_sources() {
  if [ -n "${LAB_APT_SOURCES:-}" ]; then
    [ -r "$LAB_APT_SOURCES" ] || die "LAB_APT_SOURCES=$LAB_APT_SOURCES is not a readable file"
    echo "$LAB_APT_SOURCES"
    return
  fi
  local etc=${LAB_APT_ROOT:-}/etc file entries rc copy found=() suites ubuntu=""
  for file in "$etc"/apt/sources.list.d/*.sources "$etc"/apt/sources.list "$etc"/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    found+=("$file")
    rc=0
    entries=$(bookworm_entries entries "$file") || rc=$?
    case $rc in
      0)
        echo "$file"
        return
        ;;
      1)
        mkdir -p "$cache"
        copy="$cache/lab-apt-sources.${file##*.}"
        printf '%s\n' "$entries" >"$copy.$$"
        mv "$copy.$$" "$copy"
        echo "$copy"
        return
        ;;
    esac
  done
  suites=$(for file in "${found[@]}"; do bookworm_entries suites "$file"; done | tr -s ' ' '\n' | sed '/^$/d' | sort -u | paste -sd' ')
  grep -Eqs '^(ID|ID_LIKE)=.*ubuntu' "$etc/os-release" &&
    ubuntu=" This is Ubuntu: an Ubuntu mirror cannot build the lab's Debian bookworm image."
  die "no apt source on this machine names Debian bookworm, which the lab image is built from (read: ${found[*]:-nothing in $etc/apt}; suites: ${suites:-none}).$ubuntu
Set LAB_APT_SOURCES to a file naming a Debian bookworm mirror (deb822 .sources or one-line .list), e.g.${ubuntu:+ after apt install debian-archive-keyring}:
  echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main' >~/bookworm.list
  LAB_APT_SOURCES=~/bookworm.list npm run lab -- up"
}

# Prints build-image.sh as $flavor runs it: the lines outside any `#@flavor NAME...` block and
# those of the blocks that name it. A block naming no known flavour, nested or left open fails, so
# a typo cannot drop lines from every flavour unnoticed.
recipe() {
  awk -v flavor="$flavor" -v list="$flavors" '
    BEGIN { known = " " list " " }
    /^#@flavor( |$)/ {
      if (open) { print FILENAME ":" NR ": #@flavor inside the block of line " open > "/dev/stderr"; exit 1 }
      if (NF < 2) { print FILENAME ":" NR ": #@flavor names no flavour (known: " list ")" > "/dev/stderr"; exit 1 }
      open = NR; keep = 0
      for (i = 2; i <= NF; i++) {
        if (index(known, " " $i " ") == 0) { print FILENAME ":" NR ": unknown flavour " $i " (known: " list ")" > "/dev/stderr"; exit 1 }
        if ($i == flavor) keep = 1
      }
      next
    }
    /^#@end$/ {
      if (!open) { print FILENAME ":" NR ": #@end without #@flavor" > "/dev/stderr"; exit 1 }
      open = 0; next
    }
    !open || keep { print }
    END { if (open) { print FILENAME ":" open ": #@flavor block without #@end" > "/dev/stderr"; exit 1 } }
  ' "$here/build-image.sh"
}

# The image key covers the flavour's recipe (as build-image.sh, with its file mode), guest/ and
# guest-<flavour>/, and the bytes of the apt sources file $1 (from apt_sources). For grub these
# are the same bytes as before flavours existed, so its key and cached image did not change.
image_dir() {
  local key scratch overlays=() name=lab
  [ "$flavor" = grub ] || overlays=("guest-$flavor") name="lab-$flavor"
  scratch=$(mktemp -d)
  recipe >"$scratch/build-image.sh" || {
    rm -rf "$scratch"
    exit 1
  }
  chmod --reference="$here/build-image.sh" "$scratch/build-image.sh"
  key=$({
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -c -C "$scratch" build-image.sh -C "$here" guest "${overlays[@]}"
    cat "$1"
  } | sha256sum | cut -c1-16)
  rm -rf "$scratch"
  echo "$cache/$name-$key"
}

# Passes the build's output on and says how long each of its stages (from one "[lab build]" line to
# the next) took.
time_stages() {
  local line stage="" started=$SECONDS
  while IFS= read -r line; do
    printf '%s\n' "$line" >&2
    case $line in
      "[lab build] "*)
        [ -z "$stage" ] || log "$((SECONDS - started)) s: $stage"
        stage=${line#"[lab build] "} started=$SECONDS
        ;;
    esac
  done
}

# /dev/kvm alone proves nothing: a paravirtual KVM without vmx/svm in the CPU flags hangs
# Debian's kernel, so KVM is used only when the CPU says it can virtualize.
choose_accel() {
  case ${LAB_ACCEL:-auto} in
    kvm | tcg) echo "$LAB_ACCEL" ;;
    *) if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then echo kvm; else echo tcg; fi ;;
  esac
}

# Sets accel_args for QEMU.
set_accel_args() {
  case $1 in
    kvm) accel_args=(-accel kvm -cpu host) ;;
    # Without svm: nested KVM under TCG took the whole lab down once a guest had a hostdev, so
    # libvirt in the lab runs its guests with TCG too. The translation cache is 256 MiB: QEMU keeps
    # it across a guest reboot, and the next boot's GRUB and kernel decompressor overwrite the old
    # kernel's pages, invalidating its translations one by one. With QEMU's default (1 GiB here) that
    # phase took 6 to 55 s, longer the fuller the cache (13 reboots, 2026-12-04), the reboot 60 to
    # 119 s; with 256 MiB 13-14 s and 62-66 s. An update-initramfs and update-grub took 74-78 CPU-s
    # against 80-88 with 1 GiB the same hour (with 128 MiB earlier: 36 flushes, 149 against 140).
    tcg) accel_args=(-accel tcg,tb-size=256 -cpu qemu64,-svm) ;;
  esac
}

# Sets ssh_args: this instance's key, the image's host key pinned under a port-independent alias.
set_ssh_args() {
  ssh_args=(-i "$state/id_ed25519" -p "$1" -o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR
    -o HostKeyAlias=vfio-lab -o UserKnownHostsFile="$state/known_hosts" -o GlobalKnownHostsFile=/dev/null
    -o StrictHostKeyChecking=yes)
}

ensure_image() {
  local sources dir
  # `|| exit`: bash clears errexit inside $(...), and cmd_up calls this through one.
  sources=$(apt_sources) || exit
  dir=$(image_dir "$sources") || exit
  # One build per image: another instance (or `npm test`'s background build) building it is waited for.
  mkdir -p "$cache"
  exec 8>"$dir.lock"
  flock 8
  if [ ! -f "$dir/base.qcow2" ]; then
    for tool in mmdebstrap sfdisk mke2fs qemu-system-x86_64 qemu-img ssh-keygen; do
      command -v "$tool" >/dev/null || die "$tool is missing: run npm run setup (scripts/debian-packages.txt)"
    done
    log "building the $flavor lab image into $dir (2 to 3.5 minutes alone under TCG, longer beside other work; cached afterwards)"
    set_accel_args "$(choose_accel)"
    # bash -c with build-image.sh as $0: the recipe finds guest/ beside itself, as when run directly.
    bash -c "$(recipe)" "$here/build-image.sh" "$dir" "$sources" "${accel_args[@]}" 2>&1 | time_stages ||
      die "the $flavor image build failed (output above)"
    prune_images "$dir"
  fi
  exec 8>&-
  echo "$dir"
}

# Removes this flavour's images older than $1 (lab-<hash> or lab-<flavour>-<hash>); the other
# flavours' stay cached, and so does one a running QEMU still reads as its overlay's backing file
# (another instance, started before this build).
prune_images() {
  local name=${1%-*} old
  find "$cache" -maxdepth 1 -type d -regextype posix-extended -regex ".*/${name##*/}-[0-9a-f]{16}" ! -path "$1" -print |
    while read -r old; do
      if find /proc/[0-9]*/fd -lname "$old/base.qcow2" -print -quit 2>/dev/null | grep -q .; then
        log "kept the outdated image $old: a running lab still uses it"
      else
        rm -rf "$old"
        log "removed the outdated image $old"
      fi
    done
}

# The PID in qemu.pid only counts while it is still our QEMU on our overlay (PIDs get reused).
running_pid() {
  local pid
  pid=$(cat "$state/qemu.pid" 2>/dev/null) || return 1
  [ -r "/proc/$pid/cmdline" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "file=$state/overlay.qcow2," && echo "$pid"
}

port_busy() { ss -Htln "sport = :$1" | grep -q .; }

# The same port as last time when it is free, so a stack config written for the lab stays valid.
pick_port() {
  local port
  port=$(cat "$state/port" 2>/dev/null || echo $((20000 + RANDOM % 20000)))
  while port_busy "$port"; do port=$((20000 + RANDOM % 20000)); done
  echo "$port" >"$state/port"
  echo "$port"
}

json_string() {
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

# Debian's OVMF without Secure Boot, its 4 MiB build (the one Debian's libvirt pairs with the same
# VARS template); each instance keeps its own writable copy of the variables, so what the guest
# sets (bootctl set-oneshot, LoaderEntryOneShot) survives its reboots until the next fresh overlay.
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd

uefi() { [ "$flavor" = sdboot-dracut ]; }

# Sets firmware_args for QEMU: SeaBIOS (QEMU's default) or OVMF from pflash.
set_firmware_args() {
  firmware_args=()
  uefi || return 0
  firmware_args=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code"
    -drive "if=pflash,format=raw,unit=1,file=$state/efivars.fd")
}

# Boots the overlay and waits until SSH answers; prints "PID SECONDS" or fails: status 3 when the
# kernel's timer check failed, which happens when a TCG guest is starved of CPU (the emulated timer
# does not tick within the check's busy wait; with interrupt remapping on, that check panics), so
# another boot is worth it. Any other panic fails at once, with the serial log.
boot() {
  local accel=$1 port=$2 timeout=$3 started=$SECONDS pid
  rm -f "$state/qemu.pid"
  set_accel_args "$accel"
  set_ssh_args "$port"
  set_firmware_args
  # One vCPU under TCG unless LAB_CPUS says otherwise: the same work in the guest (update-initramfs
  # and update-grub, measured) took about 15% fewer host CPU-seconds than with two, in the same time,
  # and leaves the other core to the other test lane; boots are a few seconds slower.
  local cpus=1
  [ "$accel" != kvm ] || cpus=2
  cpus=${LAB_CPUS:-$cpus}
  # GRUB's boot sector prints through the VGA BIOS and stalls without one, hence -vga std.
  # fd 9 is the lab lock: the daemonized QEMU must not keep holding it.
  qemu-system-x86_64 -name vfio-lab -machine q35,kernel-irqchip=split "${accel_args[@]}" "${firmware_args[@]}" -smp "$cpus" -m 1536 \
    -nodefaults -vga std -display none -serial "file:$state/serial.log" \
    -device intel-iommu,intremap=on,caching-mode=on \
    -drive "if=none,id=boot,file=$state/overlay.qcow2,format=qcow2,discard=unmap" \
    -device virtio-blk-pci,drive=boot,bootindex=0 \
    -nic "user,restrict=on,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$port-:22" \
    -device ich9-usb-ehci1,id=usb,addr=1d.7 \
    -device ich9-usb-uhci1,masterbus=usb.0,firstport=0,addr=1d.0,multifunction=on \
    -device ich9-usb-uhci2,masterbus=usb.0,firstport=2,addr=1d.1 \
    -device ich9-usb-uhci3,masterbus=usb.0,firstport=4,addr=1d.2 \
    -device usb-tablet,bus=usb.0 \
    -fw_cfg "name=opt/vfio-host/authorized_keys,file=$state/id_ed25519.pub" \
    -daemonize -pidfile "$state/qemu.pid" 9>&- >&2
  pid=$(running_pid) || die "QEMU did not start"
  until timeout 30 ssh "${ssh_args[@]}" -o ConnectTimeout=10 root@127.0.0.1 true 2>/dev/null; do
    if ! running_pid >/dev/null; then
      tail -n 30 "$state/serial.log" >&2
      die "QEMU exited during boot (serial log above)"
    fi
    if grep -q 'Kernel panic - not syncing' "$state/serial.log" 2>/dev/null; then
      stop_vm force
      if grep -q "timer doesn't work through Interrupt-remapped IO-APIC" "$state/serial.log"; then
        log "the kernel's timer check failed after $((SECONDS - started))s with $accel (a guest starved of CPU)"
        return 3
      fi
      tail -n 30 "$state/serial.log" >&2
      die "the kernel panicked during boot (serial log above)"
    fi
    if [ $((SECONDS - started)) -ge "$timeout" ]; then
      log "no SSH after ${timeout}s with $accel (serial log: $state/serial.log)"
      stop_vm force
      return 1
    fi
    sleep 1
  done
  echo "$pid $((SECONDS - started))"
}

# boot, again (at most 3 boots) while the kernel's timer check is what failed.
boot_retrying() {
  local attempt status
  for attempt in 1 2 3; do
    boot "$@" && return 0
    status=$?
    [ "$status" -eq 3 ] && [ "$attempt" -lt 3 ] || return "$status"
    log "booting again (attempt $((attempt + 1)) of 3)"
  done
}

cmd_up() {
  local pid image accel port booted seconds running
  if pid=$(running_pid); then
    if [ -f "$state/lab.json" ]; then
      running=$(sed -n 's/^  "flavor": "\(.*\)",$/\1/p' "$state/lab.json")
      [ "${running:-grub}" = "$flavor" ] ||
        die "$state runs the ${running:-grub} flavour (pid $pid), not $flavor: npm run lab -- down --flavor ${running:-grub} first, or give this one its own LAB_STATE"
      log "already running (pid $pid)"
      return
    fi
    log "pid $pid runs without lab.json (an interrupted up): starting it again"
    stop_vm force
  fi
  image=$(ensure_image)
  if [ ! -f "$state/id_ed25519" ]; then
    rm -f "$state/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C vfio-lab-client -f "$state/id_ed25519"
  fi
  if [ "$(cat "$state/overlay.base" 2>/dev/null)" != "$image/base.qcow2" ]; then
    new_overlay "$image"
  fi
  if uefi && [ ! -f "$state/efivars.fd" ]; then
    [ -r "$ovmf_code" ] && [ -r "$ovmf_vars" ] ||
      die "$ovmf_code or $ovmf_vars is missing: the $flavor flavour boots Debian's OVMF, run npm run setup (scripts/debian-packages.txt: ovmf)"
    cp "$ovmf_vars" "$state/efivars.fd"
  fi
  echo "vfio-lab $(cut -d' ' -f1,2 "$image/ssh_host_ed25519_key.pub")" >"$state/known_hosts"
  accel=$(choose_accel)
  port=$(pick_port)
  log "booting with $accel, SSH on 127.0.0.1:$port"
  # Real KVM boots in seconds; two minutes without SSH means this KVM cannot run the guest.
  if ! booted=$(boot_retrying "$accel" "$port" "$([ "$accel" = kvm ] && echo 120 || echo "$boot_timeout")"); then
    [ "$accel" = kvm ] || die "the lab did not boot"
    log "KVM did not boot the lab; falling back to TCG"
    accel=tcg
    booted=$(boot_retrying tcg "$port" "$boot_timeout") || die "the lab did not boot"
  fi
  read -r pid seconds <<<"$booted"
  cat >"$state/lab.json.tmp" <<EOF
{
  "host": "127.0.0.1",
  "port": $port,
  "user": "root",
  "privateKeyPath": $(json_string "$state/id_ed25519"),
  "hostKey": $(json_string "$(cut -d' ' -f1,2 "$image/ssh_host_ed25519_key.pub")"),
  "pid": $pid,
  "accel": "$accel",
  "flavor": "$flavor",
  "overlay": $(json_string "$state/overlay.qcow2"),
  "image": $(json_string "$image/base.qcow2"),
  "serialLog": $(json_string "$state/serial.log"),
  "bootSeconds": $seconds,
  "startedAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
  mv "$state/lab.json.tmp" "$state/lab.json"
  log "up in ${seconds}s (pid $pid, $accel, $flavor): $state/lab.json"
}

# A fresh overlay starts from the image's first boot, so with fresh EFI variables too (cmd_up copies them).
new_overlay() {
  rm -f "$state/overlay.qcow2" "$state/efivars.fd"
  qemu-img create -q -f qcow2 -F qcow2 -b "$1/base.qcow2" "$state/overlay.qcow2"
  echo "$1/base.qcow2" >"$state/overlay.base"
}

# graceful: ask the guest to power off first, so the overlay is left clean for the next `up`.
stop_vm() {
  local pid port
  pid=$(running_pid) || {
    rm -f "$state/qemu.pid" "$state/lab.json"
    return 0
  }
  if [ "$1" = graceful ] && port=$(cat "$state/port" 2>/dev/null); then
    set_ssh_args "$port"
    timeout 20 ssh "${ssh_args[@]}" -o ConnectTimeout=5 root@127.0.0.1 'systemctl poweroff' 2>/dev/null || true
    for _ in $(seq 120); do running_pid >/dev/null || break; sleep 0.5; done
  fi
  for signal in TERM KILL; do
    running_pid >/dev/null || break
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 20); do running_pid >/dev/null || break; sleep 0.5; done
  done
  running_pid >/dev/null && die "QEMU pid $pid did not stop"
  # QEMU daemonized, so PID 1 reaps it; wait for that so no zombie outlives `down`.
  for _ in $(seq 20); do [ -e "/proc/$pid" ] || break; sleep 0.5; done
  rm -f "$state/qemu.pid" "$state/lab.json"
  log "stopped pid $pid"
}

cmd_reset() {
  local was_running=false image started=$SECONDS
  running_pid >/dev/null && was_running=true
  stop_vm force
  image=$(ensure_image)
  rm -f "$state/id_ed25519" "$state/id_ed25519.pub"
  new_overlay "$image"
  log "pristine overlay over $image/base.qcow2 in $((SECONDS - started))s"
  if $was_running; then cmd_up; fi
}

cmd_status() {
  local pid sources image
  if pid=$(running_pid); then
    echo "running (pid $pid)"
    cat "$state/lab.json" 2>/dev/null || echo "booting: lab.json appears once SSH answers"
  else
    echo "stopped"
    sources=$(apt_sources) || exit
    image=$(image_dir "$sources")/base.qcow2 || exit
    echo "image ($flavor): $image$([ -f "$image" ] || echo " (not built yet)")"
  fi
}

cmd_ssh() {
  [ "${1:-}" = -- ] && shift
  running_pid >/dev/null || die "the lab is not running: npm run lab -- up"
  local tty=-T
  [ $# -eq 0 ] && [ -t 0 ] && tty=-t
  set_ssh_args "$(cat "$state/port")"
  exec ssh "${ssh_args[@]}" "$tty" root@127.0.0.1 "$@"
}

usage="usage: npm run lab -- up | down | ssh [-- CMD...] | reset | status | build | recipe | apt-sources [--flavor $(echo "$flavors" | tr ' ' '|')]"
case ${LAB_ACCEL:-auto} in auto | kvm | tcg) ;; *) die "LAB_ACCEL=$LAB_ACCEL: use auto, kvm or tcg" ;; esac
command=${1:-}
shift || true
flavor=${LAB_FLAVOR:-grub} flavor_from="LAB_FLAVOR=${LAB_FLAVOR:-}"
while [ $# -gt 0 ]; do
  case $1 in
    --flavor=*) flavor=${1#--flavor=} flavor_from=$1 ;;
    --flavor)
      [ $# -ge 2 ] || die "--flavor needs a name: $flavors"
      flavor=$2 flavor_from="--flavor $2"
      shift
      ;;
    *) break ;;
  esac
  shift
done
[ $# -eq 0 ] || [ "$command" = ssh ] || die "$1: unknown option. $usage"
case " $flavors " in *" $flavor "*) ;; *) die "$flavor_from: no such lab flavour; use one of: $flavors" ;; esac
# LAB_STATE picks another instance (its own key, overlay, port and lock) over the same cached image;
# by default each flavour has its own, so they can run side by side.
state=${LAB_STATE:-$cache/lab-state$([ "$flavor" = grub ] || echo "-$flavor")}
mkdir -p "$state"
chmod 700 "$state"
case $command in
  ssh) cmd_ssh "$@" ;;
  status) cmd_status ;;
  apt-sources) apt_sources ;;
  recipe) recipe ;;
  up | down | reset | build)
    # One lab per cache: a second caller waits instead of racing on the same overlay and PID.
    exec 9>"$state/lock"
    flock 9
    case $command in
      up) cmd_up ;;
      down) stop_vm graceful ;;
      reset) cmd_reset ;;
      build) ensure_image ;;
    esac
    ;;
  *) die "$usage" ;;
esac
