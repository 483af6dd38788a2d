import { publishBlock, targetIsDeviceOf } from './block.js';
import { publishDirectory, sameInode } from './filesystem.js';
import type { Publication, VolumeMode } from './record.js';

/** Is what is mounted at `target` this volume: its directory, or a loop device of its image? */
export function holdsVolume(mode: VolumeMode, data: string, target: string): Promise<boolean> {
  return mode === 'block' ? targetIsDeviceOf(target, data) : sameInode(target, data);
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
