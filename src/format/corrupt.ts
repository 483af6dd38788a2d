import { DriverError } from '../errors.js';

/** A record file that cannot be read: which file, which field (when one is to blame) and what is wrong. */
export class CorruptRecordError extends DriverError {
  constructor(
    readonly file: string,
    readonly field: string | undefined,
    readonly problem: string,
    cause?: unknown,
  ) {
    super('corrupt', `${file}: ${field ? `${field}: ` : ''}${problem}`, { cause });
    this.name = 'CorruptRecordError';
  }

  /** The problem without the file name: `field: problem`. */
  get detail(): string {
    return `${this.field ? `${this.field}: ` : ''}${this.problem}`;
  }
}

export function corruptRecord(file: string, field: string | undefined, problem: string, cause?: unknown): CorruptRecordError {
  return new CorruptRecordError(file, field, problem, cause);
}
