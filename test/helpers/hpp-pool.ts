/**
 * A pool as KubeVirt's hostpath-provisioner (HPP) CSI driver leaves it, planted on disk for tests:
 * `<root>/csi/<pv name>/` per volume (a disk.img, sparse, and what else is asked), and a snapshot
 * `<root>/csi/snapshots/<id>/data/` with the empty `<id>/<source pv>/` HPP writes beside it
 * (pkg/hostpath/reflink.go of kubevirt/hostpath-provisioner). No records, no `.hpp`.
 */
import { mkdirSync, openSync, closeSync, ftruncateSync, writeFileSync, cpSync } from 'node:fs';
import path from 'node:path';

export interface PlantedHppVolume {
  name: string;
  /** Files in the volume directory, relative path → contents. */
  files?: Record<string, string>;
  /** Size of a sparse disk.img, bytes (none when 0 or absent). */
  diskImageBytes?: number;
}

export interface PlantedHppSnapshot {
  id: string;
  /** The volume it was taken of: its files are copied into data/. */
  source: string;
}

/** The HPP CSI directory of a pool root as HPP's operator lays it out. */
export function hppDir(root: string, dir = 'csi'): string {
  return path.join(root, dir);
}

export function plantHppPool(root: string, spec: { dir?: string; volumes: PlantedHppVolume[]; snapshots?: PlantedHppSnapshot[] }): void {
  const base = hppDir(root, spec.dir);
  for (const v of spec.volumes) {
    const vdir = path.join(base, v.name);
    mkdirSync(vdir, { recursive: true, mode: 0o750 });
    for (const [rel, text] of Object.entries(v.files ?? {})) {
      mkdirSync(path.dirname(path.join(vdir, rel)), { recursive: true });
      writeFileSync(path.join(vdir, rel), text);
    }
    if (v.diskImageBytes) {
      const fd = openSync(path.join(vdir, 'disk.img'), 'w', 0o660);
      ftruncateSync(fd, v.diskImageBytes);
      closeSync(fd);
    }
  }
  for (const s of spec.snapshots ?? []) {
    const sdir = path.join(base, 'snapshots', s.id);
    mkdirSync(path.join(sdir, s.source), { recursive: true, mode: 0o755 });
    cpSync(path.join(base, s.source), path.join(sdir, 'data'), { recursive: true });
  }
}
