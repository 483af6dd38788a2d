# shellcheck shell=bash
# Sourced by hack/kernel-vm/fetch --selinux: build_selinux_root DIR makes DIR a minimal Debian chroot
# (mmdebstrap, variant minbase, the host's apt sources) with Debian's default SELinux policy compiled
# (selinux-policy-default) plus selinux/hpp_kernel_vm.cil, and the tools to load and use it
# (policycoreutils: load_policy, semodule, setfiles; selinux-utils: setenforce, getenforce). Made
# again only when the package list, the module or the suite change (DIR/.built).

SELINUX_PACKAGES=selinux-policy-default,policycoreutils,selinux-utils
SELINUX_SUITE="${HPP_KERNEL_VM_SUITE:-bookworm}"

build_selinux_root() {
  local dir=$1 cil="$KVM_DIR/selinux/hpp_kernel_vm.cil" stamp out sources
  stamp="$SELINUX_SUITE $SELINUX_PACKAGES $(sha256sum "$cil" | cut -c1-16)"
  if [[ -z $FORCE && $(cat "$dir/.built" 2>/dev/null) == "$stamp" ]]; then
    return 0
  fi
  need_commands mmdebstrap
  sources=/etc/apt/sources.list.d/debian.sources
  [[ -f $sources ]] || sources=/etc/apt/sources.list
  [[ -f $sources ]] || die "no apt sources for mmdebstrap (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)"
  log "building the SELinux chroot in $dir (mmdebstrap $SELINUX_SUITE: $SELINUX_PACKAGES)"
  rm -rf "$dir" "$dir.tmp"
  out=$(mmdebstrap --quiet --variant=minbase --include="$SELINUX_PACKAGES" "$SELINUX_SUITE" "$dir.tmp" "$sources" 2>&1) ||
    die "mmdebstrap $SELINUX_SUITE $dir.tmp failed: $out"
  [[ -f $dir.tmp/etc/selinux/config ]] || die "$dir.tmp has no /etc/selinux/config after mmdebstrap"
  cp "$cil" "$dir.tmp/tmp/hpp_kernel_vm.cil"
  # Offline: SELinux is off on the host, so semodule only rebuilds the policy file in the chroot.
  out=$(chroot "$dir.tmp" semodule -i /tmp/hpp_kernel_vm.cil 2>&1) || die "semodule -i hpp_kernel_vm.cil in $dir.tmp failed: $out"
  rm -f "$dir.tmp/tmp/hpp_kernel_vm.cil"
  chroot "$dir.tmp" semodule -l 2>/dev/null | grep -qx hpp_kernel_vm || die "semodule -l in $dir.tmp does not list hpp_kernel_vm"
  ls "$dir.tmp"/etc/selinux/default/policy/policy.* >/dev/null 2>&1 || die "no compiled policy in $dir.tmp/etc/selinux/default/policy"
  # The apt caches are of no use to the guest.
  rm -rf "$dir.tmp"/var/cache/apt/*.bin "$dir.tmp"/var/lib/apt/lists/*
  echo "$stamp" >"$dir.tmp/.built"
  mv "$dir.tmp" "$dir"
}
