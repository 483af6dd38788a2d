# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this
# Shared by hack/kernel-vm/fetch and run: where the cache is and what is in it. Sourced, not executed.

KVM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HPP_KERNEL_VM_CACHE="${HPP_KERNEL_VM_CACHE:-/var/cache/hpp-kernel-vm}"
CACHE="$HPP_KERNEL_VM_CACHE"
# The package whose dependency names the image package (linux-image-6.1.0-NN-amd64 on Debian 12).
HPP_KERNEL_VM_META="${HPP_KERNEL_VM_META:-linux-image-amd64}"
# What fetch has made: KVER, PKG, PKGVER and the paths below; run reads it.
CURRENT_ENV="$CACHE/current.env"

log() { printf 'hpp-kernel-vm: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The modules the initramfs loads (with their dependencies from modules.dep, in that order), enough
# to mount the 9p shares, the overlay, and to see the virtio console and disks.
INITRAMFS_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
  9pnet 9pnet_virtio netfs fscache 9p overlay virtio_console virtio_blk)

# Commands the tier needs and the Debian package of each. need_commands CMD... installs the missing
# ones' packages with apt-get (as root) or says which to install.
declare -A PKG_OF=(
  [qemu-system-x86_64]=qemu-system-x86 [busybox]=busybox-static [depmod]=kmod [modprobe]=kmod
  [cpio]=cpio [xz]=xz-utils [readelf]=binutils [setquota]=quota [xfs_quota]=xfsprogs
  [mkfs.xfs]=xfsprogs [mkfs.ext4]=e2fsprogs [chattr]=e2fsprogs [losetup]=util-linux
  [setpriv]=util-linux [mmdebstrap]=mmdebstrap [gzip]=gzip [dpkg-deb]=dpkg [apt-get]=apt
)
need_commands() {
  local c missing=() pkgs=()
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 && continue
    missing+=("$c")
    pkgs+=("${PKG_OF[$c]:?no package known for $c}")
  done
  # busybox must be busybox-static: the initramfs has no libc.
  if [[ " $* " == *" busybox "* ]] && command -v busybox >/dev/null 2>&1 &&
    readelf -l "$(command -v busybox)" 2>/dev/null | grep -q INTERP; then
    missing+=("static busybox")
    pkgs+=(busybox-static)
  fi
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: apt-get install --no-install-recommends ${pkgs[*]}"
  log "installing ${pkgs[*]} (for ${missing[*]})"
  local out
  out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" 2>&1) || {
    out=$(apt-get update -qq 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" 2>&1) ||
      die "apt-get install ${pkgs[*]} failed: $out"
  }
}
