/** What the daemon keeps about one volume, in `<pool>/.hpp/volumes/<name>.json`. */
export type VolumeMode = 'filesystem' | 'block';

export interface Publication {
  readOnly: boolean;
  accessMode: string;
  mountFlags: string[];
}

export interface VolumeRecord {
  version: 1;
  id: string;
  name: string;
  pool: string;
  node: string;
  mode: VolumeMode;
  /** Directory of a filesystem volume, relative to the pool root. */
  dir: string;
  /** Decimal string: JSON has no 64-bit integers. 0 means "no size requested". */
  capacityBytes: string;
  parameters: Record<string, string>;
  createdAt: string;
  state: 'ready' | 'deleting';
  /** Target paths this volume is published at on this node. */
  publications: Record<string, Publication>;
}
