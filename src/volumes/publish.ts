import { blockTargetState, publishBlock } from './block.js';
import { publishDirectory, sameInode } from './filesystem.js';
import type { Publication, VolumeMode } from '../format/records.js';
import { mountedAt, unmount } from '../system/mount.js';

/**
 * What is mounted at a publication's target: this volume ('ours'); a bind of a loop device that no
 * longer backs this volume's image, or is detaching ('stale': a publication of ours whose device was
 * taken from it, to be re-made); or something else, which is never touched.
 */
export type TargetState = { kind: 'ours' } | { kind: 'stale'; why: string } | { kind: 'other' };

export async function targetState(mode: VolumeMode, data: string, target: string): Promise<TargetState> {
  if (mode === 'block') {
    const b = await blockTargetState(target, data);
    return b.kind === 'stale' ? { kind: 'stale', why: b.why } : { kind: b.kind };
  }
  return (await sameInode(target, data)) ? { kind: 'ours' } : { kind: 'other' };
}

/** Is what is mounted at `target` this volume: its directory, or a usable loop device of its image? */
export async function holdsVolume(mode: VolumeMode, data: string, target: string): Promise<boolean> {
  return (await targetState(mode, data, target)).kind === 'ours';
}

/** Takes every layer off a stale target (see TargetState), so that the publication can be made again. */
export async function unbindStale(target: string): Promise<void> {
  while (await mountedAt(target)) await unmount(target);
}

/**
 * Makes the publication at `target`: a bind mount of the volume's directory, or of a loop device of its
 * image. Returns the publication as it is to be recorded (a block one names its loop device).
 */
export async function publishVolume(mode: VolumeMode, data: string, target: string, pub: Publication): Promise<Publication> {
  if (mode === 'block') {
    const dev = await publishBlock(data, target, { readOnly: pub.readOnly });
    return { ...pub, device: dev.name };
  }
  await publishDirectory(data, target, { readOnly: pub.readOnly, flags: pub.mountFlags });
  return pub;
}
