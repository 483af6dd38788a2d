# shellcheck shell=bash disable=SC2034 # the variables are for the checks that source this
# Shared by the e2e checks in hack/e2e/tests/ (each an executable script that hack/e2e/run runs with
# the cluster's variables exported, counting it passed when it exits 0). Sourced, not executed (not
# executable, so run does not count it). Each check runs in a namespace of its own, removed again
# with everything in it when it ends, and waits until the driver has deleted its volumes.
set -euo pipefail
# A command that fails outside any check of its status ends the check: say which.
trap 'say "FAIL: line $LINENO: $BASH_COMMAND (exit $?)"' ERR

: "${KUBECONFIG:?no cluster: run the checks with hack/e2e/run, or source \$HPP_E2E_RUN/cluster.env (set -a) first}"
HPP_E2E_CACHE=${HPP_E2E_CACHE:-/var/cache/hpp-e2e}
# shellcheck disable=SC1091 # written by hack/e2e/build
. "$HPP_E2E_CACHE/build.env"

TEST=$(basename "$0")
NS=e2e-$(tr -c 'a-z0-9\n' - <<<"${TEST,,}")
DRIVER=kubevirt.io.hostpath-provisioner
DRIVER_NS=hostpath-provisioner
BUSYBOX=$HPP_E2E_BUSYBOX_IMAGE
# The pools of hack/e2e/overlay: StorageClass, pool name, host path.
POOL_LOCAL=/var/hpvolumes
POOL_SMALL=/var/hpvolumes-small
MiB=$((1024 * 1024))

k() { "$HPP_E2E_KUBECTL" "$@"; }
kn() { "$HPP_E2E_KUBECTL" -n "$NS" "$@"; }
say() { printf '%s %s: %s\n' "$(date +%H:%M:%S)" "$TEST" "$*" >&2; }

# What a failing check shows: its namespace's objects and events, the driver's last log lines.
diagnostics() {
  {
    echo "---- $TEST: diagnostics"
    kn get pods,pvc -o wide 2>&1 || true
    k get pv -o wide 2>&1 || true
    kn get events --sort-by=.lastTimestamp 2>&1 | tail -n 30 || true
    k -n "$DRIVER_NS" get pods -o wide 2>&1 || true
    k -n "$DRIVER_NS" logs ds/hpp-csi-node -c hpp-csi-driver --tail=30 2>&1 || true
    echo "----"
  } >&2
}
fail() {
  say "FAIL: $*"
  diagnostics
  exit 1
}

# eventually SECONDS CMD...: true once CMD succeeds, polling every half second; false after SECONDS.
eventually() {
  local t=$1 deadline
  shift
  deadline=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# ---- the check's namespace ---------------------------------------------------------------------------
# PVs whose claim was in this namespace (they go once the driver has deleted the volume).
pvs_of_ns() {
  k get pv -o jsonpath='{range .items[*]}{.metadata.name} {.spec.claimRef.namespace}{"\n"}{end}' |
    awk -v ns="$NS" '$2 == ns { print $1 }'
}
no_pvs_of_ns() { [[ -z $(pvs_of_ns) ]]; }

# pool_leftovers: whatever of a volume or snapshot is still in a pool, or still uses one: entries beside
# .hpp, the contents of .hpp's volume, block, snapshot, tmp and trash directories, btrfs subvolumes,
# loop devices backed by a file in a pool, mounts of a pool's directories. Nothing once every claim
# and snapshot is gone.
POOL_META_DIRS=(volumes block snapshots snapshot-records tmp trash)
pool_leftovers() {
  local p d
  for p in "$POOL_LOCAL" "$POOL_SMALL"; do
    find "$p" -mindepth 1 -maxdepth 1 ! -name .hpp
    for d in "${POOL_META_DIRS[@]}"; do
      [[ -d $p/.hpp/$d ]] && find "$p/.hpp/$d" -mindepth 1 -maxdepth 1
    done
    losetup -l -n -O NAME,BACK-FILE | awk -v p="$p/" 'index($2, p) == 1 { print "loop device " $1 " on " $2 }'
    findmnt -rn -o TARGET,SOURCE | awk -v p="[$p/" 'index($2, p) { print "mount " $1 " of " $2 }'
  done
  # A pool's file opened through a mount that is gone (a dead driver container's) shows from the
  # pool's root.
  losetup -l -n -O NAME,BACK-FILE | awk 'index($2, "/.hpp/") == 1 { print "loop device " $1 " on " $2 " (a pool'"'"'s file)" }'
  btrfs subvolume list -o "$POOL_SMALL" 2>/dev/null | sed 's/^/btrfs subvolume /'
  return 0
}
pools_empty() { [[ -z $(pool_leftovers) ]]; }

cleanup_ns() {
  local rc=$?
  trap - EXIT
  if k get namespace "$NS" >/dev/null 2>&1; then
    kn delete pods --all --grace-period=1 --wait=true --timeout=90s >/dev/null 2>&1 || true
    k delete namespace "$NS" --wait=true --timeout=120s >/dev/null 2>&1 || { say "namespace $NS not deleted"; rc=1; }
  fi
  if ! eventually 120 no_pvs_of_ns; then
    say "PVs of $NS not deleted: $(pvs_of_ns | tr '\n' ' ')"
    rc=1
  fi
  # Every check leaves the pools as it found them: empty.
  if ! eventually 60 pools_empty; then
    say "left in the pools:"
    pool_leftovers | sed 's/^/  /' >&2
    rc=1
  fi
  ((rc == 0)) && say "passed in ${SECONDS}s" || say "FAILED (exit $rc) after ${SECONDS}s"
  exit "$rc"
}

# begin: a fresh namespace for this check, removed on exit whatever happens.
begin() {
  SECONDS=0
  k delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
  k create namespace "$NS" >/dev/null
  trap cleanup_ns EXIT
  # The default ServiceAccount comes from the controller-manager a moment later.
  eventually 30 kn get serviceaccount default || fail "no default ServiceAccount in $NS"
  say "namespace $NS"
}

# ---- objects -------------------------------------------------------------------------------------------
# pvc NAME CLASS SIZE [Filesystem|Block] [DATASOURCE-KIND DATASOURCE-NAME]: a claim.
pvc() {
  local name=$1 class=$2 size=$3 mode=${4:-Filesystem} dskind=${5:-} dsname=${6:-} ds=''
  case $dskind in
    '') ;;
    VolumeSnapshot) ds=$'\n  dataSource:\n    apiGroup: snapshot.storage.k8s.io\n    kind: VolumeSnapshot\n    name: '"$dsname" ;;
    PersistentVolumeClaim) ds=$'\n  dataSource:\n    kind: PersistentVolumeClaim\n    name: '"$dsname" ;;
    *) fail "pvc: unknown data source kind $dskind" ;;
  esac
  kn apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: $name
spec:
  storageClassName: $class
  volumeMode: $mode
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: $size$ds
EOF
}

# pod NAME VOLUME...: a busybox pod that idles (and stops at once on TERM), with each VOLUME, written
# fs:CLAIM (mounted at /data/CLAIM) or block:CLAIM (the device /dev/CLAIM). With POD_SCRIPT set, the
# pod runs that shell script instead of idling; POD_RESTART_POLICY sets its restartPolicy (Never).
IDLE_SCRIPT="trap 'exit 0' TERM; while :; do sleep 1; done"
pod() {
  local name=$1 v mounts='' devices='' volumes='' script
  shift
  # The script as a YAML double-quoted string.
  script=$(printf '%s' "${POD_SCRIPT:-$IDLE_SCRIPT}" | sed 's/\\/\\\\/g; s/"/\\"/g' | awk '{ printf "%s%s", (NR > 1 ? "\\n" : ""), $0 }')
  for v; do
    local kind=${v%%:*} claim=${v#*:}
    case $kind in
      fs) mounts+=$'\n        - name: '"$claim"$'\n          mountPath: /data/'"$claim" ;;
      block) devices+=$'\n        - name: '"$claim"$'\n          devicePath: /dev/'"$claim" ;;
      *) fail "pod: volume $v is neither fs:CLAIM nor block:CLAIM" ;;
    esac
    volumes+=$'\n    - name: '"$claim"$'\n      persistentVolumeClaim:\n        claimName: '"$claim"
  done
  [[ -z $mounts ]] || mounts=$'\n      volumeMounts:'"$mounts"
  [[ -z $devices ]] || devices=$'\n      volumeDevices:'"$devices"
  [[ -z $volumes ]] || volumes=$'\n  volumes:'"$volumes"
  kn apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
spec:
  restartPolicy: ${POD_RESTART_POLICY:-Never}
  terminationGracePeriodSeconds: 2
  # No cluster DNS here (CLUSTER.md): the node's (empty) resolver setup instead of a warning per pod.
  dnsPolicy: Default
  containers:
    - name: c
      image: $BUSYBOX
      imagePullPolicy: Never
      command: ["sh", "-c", "$script"]$mounts$devices$volumes
EOF
}

# in POD SCRIPT: runs SCRIPT with sh in POD.
in_pod() { kn exec "$1" -- sh -c "$2"; }

wait_running() {
  local p
  for p; do
    kn wait --for=condition=Ready "pod/$p" --timeout=120s >/dev/null || fail "pod $p not Ready"
  done
}
delete_pods() {
  kn delete pod "$@" --grace-period=2 --wait=true --timeout=90s >/dev/null || fail "pods $* not deleted"
}
pvc_phase() { kn get pvc "$1" -o jsonpath='{.status.phase}'; }
is_bound() { [[ $(pvc_phase "$1") == Bound ]]; }
wait_bound() {
  local c
  for c; do eventually 120 is_bound "$c" || fail "claim $c not Bound"; done
}

# The PV of a bound claim, its CSI volume id (<node>:<pool>:<name>), and the volume's place on the host.
pv_of() { kn get pvc "$1" -o jsonpath='{.spec.volumeName}'; }
handle_of() { k get pv "$(pv_of "$1")" -o jsonpath='{.spec.csi.volumeHandle}'; }
pool_path() {
  case $1 in
    local) echo "$POOL_LOCAL" ;;
    small) echo "$POOL_SMALL" ;;
    *) fail "unknown pool $1" ;;
  esac
}
# host_dir CLAIM: the directory of a Filesystem volume on the host; host_image CLAIM: a Block volume's image.
host_dir() {
  local h
  h=$(handle_of "$1")
  IFS=: read -r _ pool name <<<"$h"
  echo "$(pool_path "$pool")/$name"
}
host_image() {
  local h
  h=$(handle_of "$1")
  IFS=: read -r _ pool name <<<"$h"
  echo "$(pool_path "$pool")/.hpp/block/$name.img"
}

# ---- sizes -----------------------------------------------------------------------------------------------
# bytes QUANTITY: a Kubernetes quantity (as the API writes them: 926336Ki, 1Gi, 1500M, 123) in bytes.
bytes() {
  awk -v q="$1" 'BEGIN {
    n = q; sub(/[A-Za-z]+$/, "", n); s = substr(q, length(n) + 1)
    m["Ki"] = 2^10; m["Mi"] = 2^20; m["Gi"] = 2^30; m["Ti"] = 2^40
    m["k"] = 1e3; m["M"] = 1e6; m["G"] = 1e9; m["T"] = 1e12; m[""] = 1
    if (!(s in m)) exit 1
    printf "%.0f\n", n * m[s]
  }'
}

# ---- the driver ------------------------------------------------------------------------------------------
driver_pod() {
  k -n "$DRIVER_NS" get pods -l app.kubernetes.io/component=node-plugin \
    --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name}'
}

# get_capacity POOL: GetCapacity's available_capacity for storagePool POOL, asked on the driver's own CSI
# socket from inside its container (the call csi-provisioner makes).
get_capacity() {
  k -n "$DRIVER_NS" exec "$(driver_pod)" -c hpp-csi-driver -- node --input-type=module -e "
    import * as grpc from '@grpc/grpc-js';
    import { loadCsi } from '/app/dist/src/csi/proto.js';
    const csi = loadCsi();
    const c = new csi.Controller('unix:///csi/csi.sock', grpc.credentials.createInsecure());
    c.GetCapacity({ parameters: { storagePool: '$1' } }, (err, res) => {
      if (err) { console.error(err.message); process.exit(1); }
      console.log(String(res.available_capacity)); process.exit(0);
    });"
}

# capacity_of CLASS: the CSIStorageCapacity of StorageClass CLASS on this node, in bytes.
capacity_of() {
  local q
  q=$(k -n "$DRIVER_NS" get csistoragecapacities \
    -o jsonpath="{range .items[?(@.storageClassName==\"$1\")]}{.capacity}{\"\n\"}{end}")
  [[ $(wc -l <<<"$q") == 1 && -n $q ]] || return 1
  bytes "$q"
}
