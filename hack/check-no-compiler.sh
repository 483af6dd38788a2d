#!/usr/bin/env bash
# `npm ci` on a machine where node-gyp cannot build (no C compiler): the install succeeds, says that the
# native addon was not built, and the build and the unit tests run with the fallbacks (mount(8) instead
# of our addon, flock(1) instead of fs-ext). A phase of .ci/run.
#
# In a scratch copy of this checkout (its tracked files, as they are in the working tree), with CC and
# CXX set to `false`: node-gyp finds Python and make and configures, and every compile fails, as it does
# without a compiler. Nothing in the checkout is touched. Usage: hack/check-no-compiler.sh [vitest args]
# (default: the unit tests, test/unit).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/hpp-no-compiler.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
die() { echo "check-no-compiler: $*" >&2; exit 1; }

(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | grep -zv '^node_modules$' |
  while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -C "$WORK" -xf -
[[ ! -e $WORK/src/native/build ]] || die "copied a build of the addon"

cd "$WORK"
# Whatever configures HPP_NATIVE elsewhere, not here; CC/CXX that cannot compile anything.
set +e
env -u HPP_NATIVE CC=false CXX=false npm ci --no-audit --no-fund >"$WORK/npm-ci.log" 2>&1
rc=$?
set -e
cat "$WORK/npm-ci.log"
[[ $rc == 0 ]] || die "npm ci failed (exit $rc) although the native parts are optional"
grep -q 'hpp-csi-driver install: the native mount addon (src/native) was not built' "$WORK/npm-ci.log" ||
  die "npm ci did not say that the addon was not built"
[[ ! -e src/native/build/Release/hpp_mount.node ]] || die "the addon was built with CC=false?"
if node -e "require('fs-ext')" 2>/dev/null; then die "fs-ext was built with CC=false?"; fi
echo "check-no-compiler: npm ci succeeded without the native addon and fs-ext"

npm run --silent build
# The daemon's choice of mount backend, as its start-up line reports it.
node --input-type=module -e "
  const { loadMountBackend } = await import('./dist/src/system/native-mount.js');
  const { FLOCK_BACKEND } = await import('./dist/src/system/flock.js');
  const b = loadMountBackend({ kind: 'auto' });
  if (b.kind !== 'tools') { console.error('expected the mount(8) backend, got', b.kind); process.exit(1); }
  if (FLOCK_BACKEND !== 'flock(1)') { console.error('expected flock(1), got', FLOCK_BACKEND); process.exit(1); }
  console.log('check-no-compiler: mounts by mount(8) (' + b.why + '), locks by ' + FLOCK_BACKEND);
"
if [[ $# == 0 ]]; then set -- test/unit; fi
npx vitest run --reporter=default "$@"
