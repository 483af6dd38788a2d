import { corruptRecord } from './corrupt.js';
import type { Publications, StoredVolumeRecord } from './records.js';

/*
 * The versions of the on-disk format and how what older versions left is read.
 *
 * - HPP (KubeVirt's hostpath-provisioner), which this driver replaces: a volume is a directory named
 *   after its PV in HPP's directory of the pool (`csi`), and nothing else; no records, no `.hpp`. Such
 *   a volume is served in place under its PV name (volumes/hpp-volumes.ts, docs/hpp-volumes.md): a
 *   version 1 record of origin "hpp" is written for it the first time something about it changes,
 *   and its data is never moved. Its size, mode and parameters are nowhere to be read: capacity 0
 *   (unknown), Filesystem, none.
 * - Version 1, the current one: the records of records.ts. Volume records written before the
 *   publication log carry their publications themselves (`publications`); they are read as they are,
 *   and when a pool is loaded the daemon moves those publications into the log and writes the record
 *   again without them (legacyPublications, volumes/pool-loader.ts). Nothing else has changed within
 *   version 1: later fields (preallocation, diskImage, contentSource, projectId) are optional.
 *
 * A record of any other version is corrupt: reported and left untouched, never rewritten.
 */

export const FORMAT_VERSION = 1;

/** A volume record file's object, at the current version; throws a corrupt error for a version it does not know. */
export function upgradeVolumeRecord(raw: Record<string, unknown>, file: string): Record<string, unknown> {
  checkVersion(raw, file);
  return raw;
}

/** A snapshot record file's object, at the current version (snapshot records have only ever had version 1). */
export function upgradeSnapshotRecord(raw: Record<string, unknown>, file: string): Record<string, unknown> {
  checkVersion(raw, file);
  return raw;
}

function checkVersion(raw: Record<string, unknown>, file: string): void {
  if (raw.version !== FORMAT_VERSION) throw corruptRecord(file, 'version', `unknown record version ${JSON.stringify(raw.version)}`);
}

/**
 * Publications a record from before the publication log still carries, or undefined when it carries
 * none: such a record is written again without them once they are in the log.
 */
export function legacyPublications(stored: StoredVolumeRecord): Publications | undefined {
  return stored.publications && Object.keys(stored.publications).length > 0 ? stored.publications : undefined;
}
