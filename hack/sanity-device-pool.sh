#!/usr/bin/env bash
# csi-sanity against a pool backed by a blank loop device that the driver formats XFS itself,
# with --csi.testvolumeparameters naming that pool. Usage: hack/sanity-device-pool.sh mount|block
set -euo pipefail
mode=${1:?usage: $0 mount|block}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/hpp-devpool.XXXXXX)
truncate -s 2G "$work/disk.img"
dev=$(losetup --find --show "$work/disk.img")

cleanup() {
  status=$?
  # grep finding nothing (all clean) is not a failure, even under pipefail.
  { findmnt -rn -o TARGET | grep "^$work/" || true; } | sort -r | while read -r m; do umount "$m" || umount -l "$m" || true; done
  losetup -d "$dev" 2>/dev/null || true
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT INT TERM

printf 'storagePool: xfs\n' > "$work/params.yaml"
DRIVER_FLAGS="--pool xfs=$work/xfs:device=$dev" \
  "$root/hack/sanity.sh" "$mode" --csi.testvolumeparameters "$work/params.yaml" "$@"
findmnt -n -o FSTYPE "$work/xfs" | grep -qx xfs || { echo "pool was not mounted as XFS" >&2; exit 1; }
