import type { Logger } from '../observe/logger.js';
import type { VolumeManager } from '../volumes/manager.js';

/** What every CSI service needs to know about this daemon. */
export interface DriverContext {
  driverName: string;
  version: string;
  node: string;
  volumes: VolumeManager;
  log: Logger;
}
