import { status } from '@grpc/grpc-js';
import { invalidInput } from '../errors.js';
import { StatusError } from './status.js';
import type { ListSnapshotsRequest__Output, ListVolumesRequest__Output } from './types.js';
import { parseVolumeId } from '../volumes/ids.js';

/** What a List* request asks for: at most `max` entries (0: all) after the id `token`. */
export interface PageRequest {
  max: number;
  token: string;
}

/** Checks max_entries and starting_token of a ListVolumes or ListSnapshots request. */
export function pageRequest(req: Pick<ListVolumesRequest__Output | ListSnapshotsRequest__Output, 'max_entries' | 'starting_token'>): PageRequest {
  const max = req.max_entries;
  if (!Number.isInteger(max) || max < 0) throw invalidInput(`max_entries must not be negative, got ${req.max_entries}`);
  const token = req.starting_token;
  // CSI answers a token it never gave out with ABORTED (the listing changed under the caller).
  if (token && !parseVolumeId(token)) throw new StatusError(status.ABORTED, `starting_token ${JSON.stringify(token)} is not one this driver gave out`);
  return { max, token };
}

/**
 * One page of `items`, which are sorted by id. The token is the last id of the previous page, so pages
 * stay correct when items come and go between calls.
 */
export function takePage<T>(items: readonly T[], idOf: (item: T) => string, { max, token }: PageRequest): { page: T[]; next_token: string } {
  const after = token ? items.filter((item) => idOf(item) > token) : [...items];
  const page = max > 0 ? after.slice(0, max) : after;
  return { page, next_token: page.length < after.length ? idOf(page[page.length - 1]!) : '' };
}
