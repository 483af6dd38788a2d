#!/usr/bin/env bash
# Render the Block PVC + pool device pod pair of a device-backed storage pool for each node, to stdout:
#
#   hack/render-pool-pods.sh POOL STORAGECLASS SIZE [NODE...] | kubectl apply -f -
#
#   POOL          pool name as in the hpp-pools ConfigMap (a DNS label), e.g. fast
#   STORAGECLASS  the StorageClass of the per-node Block PVCs, e.g. local-block
#   SIZE          size of each PVC as a Kubernetes quantity, e.g. 500Gi
#   NODE...       node names; default: every node of `kubectl get nodes -o name`
#
# Environment: IMAGE, the driver image (default hpp-csi-driver:latest, as in deploy/daemonset.yaml).
# Templates: deploy/pool-template/pvc.yaml and pod.yaml. Plain bash, no templating tool. See the section
# "Device-backed pools (PVC templates)" in deploy/README.md for the whole setup.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true # bash 5.2: no '&' expansion in ${var//pat/rep}

usage() {
  local line n=0
  while IFS= read -r line; do
    n=$((n + 1))
    [[ $n -ge 2 && $n -le 13 ]] || continue
    line=${line#\#}
    printf '%s\n' "${line# }" >&2
  done <"${BASH_SOURCE[0]}"
  exit 2
}
die() {
  printf 'render-pool-pods: %s\n' "$*" >&2
  exit 2
}

[[ ${1-} == -h || ${1-} == --help ]] && usage
[[ $# -ge 3 ]] || usage

pool=$1
storage_class=$2
size=$3
shift 3
image=${IMAGE:-hpp-csi-driver:latest}

templates="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/deploy/pool-template"

# Same rule as the driver's pool names (src/volumes/ids.ts POOL_NAME_RE).
[[ $pool =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || die "pool name '$pool' must be a DNS label: a-z, 0-9 and '-', 1-63 characters"
dns_subdomain='^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$'
[[ $storage_class =~ $dns_subdomain && ${#storage_class} -le 253 ]] || die "StorageClass name '$storage_class' is not a valid object name"
[[ $size =~ ^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$ && ! $size =~ ^0+(\.0+)?[A-Za-z]*$ ]] ||
  die "size '$size' is not a positive quantity such as 100Gi"
[[ $image =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || die "IMAGE '$image' is not an image reference"

nodes=("$@")
if [[ ${#nodes[@]} -eq 0 ]]; then
  command -v kubectl >/dev/null || die "no NODE given and kubectl is not installed"
  listed=$(kubectl get nodes -o name) || die "kubectl get nodes failed"
  while IFS= read -r line; do
    [[ -n $line ]] && nodes+=("${line#node/}")
  done <<<"$listed"
  [[ ${#nodes[@]} -gt 0 ]] || die "the cluster has no nodes"
fi

declare -A seen=()
for node in "${nodes[@]}"; do
  [[ $node =~ $dns_subdomain && ${#node} -le 253 ]] || die "node name '$node' is not a valid node name"
  [[ -z ${seen[$node]+x} ]] || die "node '$node' is given twice"
  seen[$node]=1
  name="hpp-pool-$pool-$node"
  [[ ${#name} -le 253 ]] || die "object name '$name' is longer than 253 characters"
done

pvc_template=$(<"$templates/pvc.yaml")
pod_template=$(<"$templates/pod.yaml")

# Drop the template's header comment, replace every placeholder (the values were checked above: no
# characters YAML would read specially).
render() {
  local text=$1 node=$2
  while [[ $text == '#'* && $text == *$'\n'* ]]; do text=${text#*$'\n'}; done
  text=${text//__POOL__/"$pool"}
  text=${text//__NODE__/"$node"}
  text=${text//__STORAGE_CLASS__/"$storage_class"}
  text=${text//__SIZE__/"$size"}
  text=${text//__IMAGE__/"$image"}
  [[ ! $text =~ __[A-Z_]+__ ]] || die "placeholder ${BASH_REMATCH[0]} is left in the rendered template"
  printf '%s\n' "$text"
}

printf '# Pool %s: Block PVC (StorageClass %s, %s) and pool device pod for %d node(s).\n' "$pool" "$storage_class" "$size" "${#nodes[@]}"
printf '# Rendered by hack/render-pool-pods.sh from deploy/pool-template/.\n'
for node in "${nodes[@]}"; do
  printf -- '---\n'
  render "$pvc_template" "$node"
  printf -- '---\n'
  render "$pod_template" "$node"
done
