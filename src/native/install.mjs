// npm's install script for this package (package.json "install"): builds the native addons' part of ours,
// src/native (mount(2), umount2(2), statx, LOOP_GET_STATUS64), with node-gyp, and tolerates a failed build.
// Both native parts are optional: without our addon the daemon runs mount(8)/umount(8) (src/system/native-mount.ts),
// without fs-ext (an optionalDependency) it takes its flocks with flock(1) (src/system/flock.ts). So `npm ci`
// succeeds on a machine without a C compiler or Python, and the build and unit tests run there.
//
// HPP_NATIVE=required makes a failed build, or a missing fs-ext, fail the install: .ci/run, the Dockerfile
// and the e2e image build set it, so that what is tested and shipped always has both.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const required = process.env.HPP_NATIVE === 'required';
// npm hands its own node-gyp to install scripts (npm_config_node_gyp); else the one on PATH.
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp]] : ['node-gyp', []];
const res = spawnSync(cmd, [...args, 'rebuild', '--directory=src/native', '--silent'], { cwd: root, stdio: 'inherit' });

const problems = [];
if (res.error || res.status !== 0) {
  const why = res.error ? res.error.message : res.signal ? `killed by ${res.signal}` : `exit status ${res.status}`;
  problems.push(
    `the native mount addon (src/native) was not built (node-gyp rebuild: ${why}); the daemon will run ` +
      'mount(8) and umount(8) instead (its "serving CSI" log line says "mounts":"mount(8) ..."). To build ' +
      'it, install python3, make and a C/C++ compiler and run `npm run build:native`.',
  );
}
try {
  createRequire(path.join(root, 'package.json'))('fs-ext');
} catch {
  problems.push('fs-ext (optional) is not installed, its build failed: locks are taken with flock(1) instead.');
}
for (const p of problems) process.stderr.write(`hpp-csi-driver install: ${p}\n`);
if (problems.length > 0 && required) {
  process.stderr.write('hpp-csi-driver install: HPP_NATIVE=required: failing the install.\n');
  process.exit(1);
}
