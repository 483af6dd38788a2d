# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this
# Shared by hack/e2e/up, down and run: where the cluster lives, its ports, and the ledger of what up
# made. Sourced, not executed. Every value can be overridden from the environment.

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The build cache (hack/e2e/build) and the run dir (everything one cluster writes, removed by down).
HPP_E2E_CACHE="${HPP_E2E_CACHE:-/var/cache/hpp-e2e}"
HPP_E2E_RUN="${HPP_E2E_RUN:-/var/tmp/hpp-e2e}"
HPP_E2E_K8S_VERSION="${HPP_E2E_K8S_VERSION:-v1.34.4}"
RUN="$HPP_E2E_RUN"

# Node name (kubelet --hostname-override) and the address kubelet reports as InternalIP: the
# machine's first global IPv4 address. The apiserver reaches kubelet there; it is this machine's own
# address, so that traffic never leaves it.
HPP_E2E_NODE="${HPP_E2E_NODE:-$(hostname | tr '[:upper:]' '[:lower:]')}"
if [[ -z "${HPP_E2E_NODE_IP:-}" ]]; then
  HPP_E2E_NODE_IP="$(ip -4 -o addr show scope global 2>/dev/null | awk '{sub(/\/.*/, "", $4); print $4; exit}')"
fi

# Ports, all off their defaults (etcd 2379/2380, apiserver 6443, kubelet 10250/10248,
# controller-manager 10257, scheduler 10259), all but kubelet's bound to 127.0.0.1.
HPP_E2E_ETCD_PORT="${HPP_E2E_ETCD_PORT:-12379}"
HPP_E2E_ETCD_PEER_PORT="${HPP_E2E_ETCD_PEER_PORT:-12380}"
HPP_E2E_APISERVER_PORT="${HPP_E2E_APISERVER_PORT:-16443}"
HPP_E2E_KUBELET_PORT="${HPP_E2E_KUBELET_PORT:-20250}"
HPP_E2E_KUBELET_HEALTHZ_PORT="${HPP_E2E_KUBELET_HEALTHZ_PORT:-20248}"
HPP_E2E_KCM_PORT="${HPP_E2E_KCM_PORT:-20257}"
HPP_E2E_SCHEDULER_PORT="${HPP_E2E_SCHEDULER_PORT:-20259}"

# Networks: pods on a bridge of our own with no address on the host side (no gateway, no masquerade,
# no routes), services only as API objects (there is no kube-proxy).
HPP_E2E_BRIDGE="${HPP_E2E_BRIDGE:-hppe2e0}"
HPP_E2E_POD_CIDR="${HPP_E2E_POD_CIDR:-10.213.0.0/24}"
HPP_E2E_SERVICE_CIDR="${HPP_E2E_SERVICE_CIDR:-10.214.0.0/24}"

# kubelet's root dir: CSI drivers and deploy/ assume /var/lib/kubelet (plugins/, plugins_registry/,
# pods/). up uses it only when it does not exist yet or was made by an earlier up (marker file).
HPP_E2E_KUBELET_ROOT="${HPP_E2E_KUBELET_ROOT:-/var/lib/kubelet}"
# Host paths that pods mount with mountPropagation Bidirectional: made shared mounts for the
# cluster's life. Each entry is PATH, or PATH:FSTYPE:SIZE for a pool on a loop device of its own
# (a filesystem that enforces its size). The default is what hack/e2e/overlay expects: the
# directory pool "local", the 1G btrfs pool "small" and the 16G one "suite" (sparse files).
HPP_E2E_POOLS="${HPP_E2E_POOLS:-/var/hpvolumes /var/hpvolumes-small:btrfs:1G /var/hpvolumes-suite:btrfs:16G}"

# Components at this nice level (the machine is shared; 0 keeps timings honest).
HPP_E2E_NICE="${HPP_E2E_NICE:-0}"

# Derived paths.
PKI="$RUN/pki"
KCFG="$RUN/kubeconfig"
LOGS="$RUN/log"
PIDS="$RUN/pid"
RECORD="$RUN/record"
CTRD_DIR="$RUN/containerd"
CTRD_SOCK="$CTRD_DIR/containerd.sock"
CNI_CONF_DIR="$RUN/cni/net.d"
CNI_BIN_DIR="${HPP_E2E_CNI_BIN_DIR:-/usr/lib/cni}"
SYSCTL_DIR="$RUN/sysctl"
KUBELET_MARKER="$HPP_E2E_KUBELET_ROOT/.hpp-e2e-cluster"
ADMIN_KUBECONFIG="$KCFG/admin.kubeconfig"
APISERVER_URL="https://127.0.0.1:$HPP_E2E_APISERVER_PORT"

# The kernel settings kubelet writes at start (pkg/kubelet/cm setupKernelTunables). up binds a file
# of our own over each for the cluster's life, so kubelet writes the file and never the kernel.
KUBELET_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- the record: one line per thing up made, undone by down in reverse order -------------------
# Kinds: mkdir PATH | mount PATH | bind-self PATH | sysctl-bind KEY VALUE | link NAME |
#        loop DEV FILE | pid NAME (pid file $PIDS/NAME.pid) | cgroups NAME (kubepods etc.) |
#        kubelet-root PATH (where kubelet's mounts are: unmounted, not removed)
record() { printf '%s\n' "$*" >>"$RECORD"; }

# mkdir -p that records each directory it created (outermost first), for down to remove.
mkdir_rec() {
  local d="$1" missing=()
  while [[ ! -e "$d" ]]; do missing=("$d" "${missing[@]}"); d="$(dirname "$d")"; done
  local m
  for m in "${missing[@]}"; do mkdir "$m"; record mkdir "$m"; done
}

# ---- processes ------------------------------------------------------------------------------------
# start NAME CMD...: runs CMD detached (own session, stdin closed), logs to $LOGS/NAME.log, writes
# $PIDS/NAME.pid with the pid, the binary and its start time so that stop never signals a reused pid.
start() {
  local name="$1"; shift
  local bin; bin="$(readlink -f "$(command -v "$1")")"
  setsid nice -n "$HPP_E2E_NICE" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  # setsid and nice exec in place (setsid forks only when it leads a process group, which a
  # background job of a non-interactive shell never does): wait for the pid to become the binary.
  local i
  for ((i = 0; i < 50; i++)); do
    [[ "$(readlink /proc/$pid/exe 2>/dev/null)" == "$bin" ]] && break
    sleep 0.1
  done
  # What runs there now (a wrapper script shows as its interpreter), for stop's identity check.
  local exe; exe="$(readlink "/proc/$pid/exe" 2>/dev/null || echo "$bin")"
  printf '%s %s %s\n' "$pid" "$exe" "$(proc_start "$pid")" >"$PIDS/$name.pid"
  record pid "$name"
}

proc_start() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }

# The pid in NAME's pid file if that process is still the one we started, else nothing.
live_pid() {
  local f="$PIDS/$1.pid" pid bin st
  [[ -f "$f" ]] || return 0
  read -r pid bin st <"$f" || return 0
  [[ -n "$pid" && -e "/proc/$pid" ]] || return 0
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$bin" && "$(proc_start "$pid")" == "$st" ]] || return 0
  echo "$pid"
}

# wait_gone SECONDS PID...: true once every pid has exited.
wait_gone() {
  local t="$1"; shift
  local deadline=$((SECONDS + t)) p alive
  while :; do
    alive=0
    for p in "$@"; do [[ -e /proc/$p ]] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && alive=1; done
    ((alive == 0)) && return 0
    ((SECONDS >= deadline)) && return 1
    sleep 0.2
  done
}

# stop_pids SECONDS PID...: TERM, then KILL whatever is left after SECONDS.
stop_pids() {
  local t="$1"; shift
  (($# == 0)) && return 0
  kill -TERM "$@" 2>/dev/null || true
  if ! wait_gone "$t" "$@"; then
    kill -KILL "$@" 2>/dev/null || true
    wait_gone 10 "$@" || log "WARNING: still alive after KILL: $*"
  fi
}

# Every process in a kubepods cgroup (pods' containers and sandboxes), in any hierarchy.
kubepods_procs() {
  local d
  for d in /sys/fs/cgroup/*/kubepods; do
    [[ -d $d ]] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

# containerd's shims: found by our containerd's socket in their command line (no other containerd
# uses that path), which outlive it.
shim_pids() {
  local f pid
  # grep -z: one argument per "line"; -x: the whole argument.
  while read -r f; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    if [[ $(tr '\0' '\n' 2>/dev/null <"$f" | head -n1) == *containerd-shim* ]]; then echo "$pid"; fi
  done < <(grep -lzxF -- "$CTRD_SOCK" /proc/[0-9]*/cmdline 2>/dev/null || true)
  return 0
}

# ---- mounts ---------------------------------------------------------------------------------------
# Mount points at or under PATH, deepest (most recently stacked) first.
mounts_under() {
  local p="${1%/}"
  # findmnt -r escapes spaces as \x20; our paths have none. /proc/self/mountinfo order is mount
  # order, so reversing it unmounts stacked mounts top first.
  findmnt -rn -o TARGET | awk -v p="$p" '$0 == p || index($0, p "/") == 1' | tac
}

is_mountpoint() { findmnt -rn -o TARGET | grep -qxF -- "${1%/}"; }

# Unmount every mount at or under PATH; lazily only as the last resort.
umount_tree() {
  local p="$1" m i
  for ((i = 0; i < 5; i++)); do
    while read -r m; do
      [[ -n "$m" ]] || continue
      umount "$m" 2>/dev/null || true
    done < <(mounts_under "$p")
    [[ -z "$(mounts_under "$p")" ]] && return 0
    sleep 0.5
  done
  while read -r m; do
    [[ -n "$m" ]] || continue
    log "WARNING: lazy unmount of busy $m"
    umount -l "$m" 2>/dev/null || true
  done < <(mounts_under "$p")
  [[ -z "$(mounts_under "$p")" ]]
}

# rm -rf that refuses to cross into anything still mounted under PATH (a bind mount of the same
# filesystem would otherwise be emptied through).
safe_rm_rf() {
  local p="$1"
  [[ -e "$p" ]] || return 0
  if [[ -n "$(mounts_under "$p")" ]]; then
    log "WARNING: not removing $p: still mounted under it:"; mounts_under "$p" >&2
    return 1
  fi
  rm -rf --one-file-system -- "$p"
}

# The loop devices of the cluster's volumes, holders first (so that each detach takes effect at once
# rather than being deferred by the kernel):
#   - kubelet's: it puts a loop device over each block volume's device it maps, to keep that device
#     from going away; found by the device node's inode, since the path it was attached by (a bind
#     under kubelet's root) is gone once unmounted;
#   - the driver's: backed by a file under one of the PATHs, or by a pool's file seen through a mount
#     that is gone (a dead driver container's: the path then starts at the pool's root, "/.hpp/").
volume_loops() {
  local dev file p ours=() devfs inos
  while read -r dev file; do
    file=${file% (deleted)}
    if [[ $file == /.hpp/* ]]; then ours+=("$dev"); continue; fi
    for p in "$@"; do
      if [[ $file == "$p"/* ]]; then ours+=("$dev"); break; fi
    done
  done < <(losetup -l -n -O NAME,BACK-FILE 2>/dev/null)
  ((${#ours[@]})) || return 0
  devfs=$(mountpoint -d /dev)
  inos=" $(stat -c %i "${ours[@]}" | tr '\n' ' ')"
  losetup -l -n -O NAME,BACK-MAJ:MIN,BACK-INO 2>/dev/null |
    awk -v fs="$devfs" -v w="$inos" '$2 == fs && index(w, " " $3 " ") { print $1 }'
  printf '%s\n' "${ours[@]}"
}

# Unmount everything below a self-bound dir but keep the bind itself for the record step.
umount_below() {
  local p=$1 m
  while read -r m; do
    if [[ -n $m && $m != "${p%/}" ]]; then
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    fi
  done < <(mounts_under "$p")
}

kubectl_admin() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }
