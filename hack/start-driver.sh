#!/usr/bin/env bash
# Start the built driver in the foreground: one pool named "default" at POOL_DIR, node name $(hostname).
# Usage: hack/start-driver.sh ENDPOINT POOL_DIR [more driver flags]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 ENDPOINT POOL_DIR [more driver flags]" >&2
  exit 2
fi
endpoint=$1
pool=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$root/dist/cmd/hpp-csi-driver.js" ]; then
  echo "dist/ is missing: run 'npm run build' first" >&2
  exit 1
fi
mkdir -p "$pool"
exec node "$root/dist/cmd/hpp-csi-driver.js" --endpoint "$endpoint" --pool "default=$pool" --node-name "$(hostname)" "$@"
