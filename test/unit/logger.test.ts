import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createLogger, redactSecrets } from '../../src/observe/logger.js';

describe('redactSecrets', () => {
  it('replaces every "secrets" map, at any depth and inside arrays, and keeps the rest', () => {
    const req = {
      name: 'pvc-1',
      secrets: { password: 'hunter2', token: 't0k3n' },
      parameters: { storagePool: 'default' },
      nested: { deeper: { secrets: { key: 'v' }, keep: 1 } },
      list: [{ secrets: { a: 'b' } }, { other: 'x' }],
      volume_capability: null,
    };
    const out = redactSecrets(req) as typeof req;
    expect(out).toEqual({
      name: 'pvc-1',
      secrets: '[REDACTED]',
      parameters: { storagePool: 'default' },
      nested: { deeper: { secrets: '[REDACTED]', keep: 1 } },
      list: [{ secrets: '[REDACTED]' }, { other: 'x' }],
      volume_capability: null,
    });
    expect(JSON.stringify(out)).not.toMatch(/hunter2|t0k3n|"key"/);
  });

  it('shows an empty secrets map as empty (nothing to hide) and does not touch the input', () => {
    const req = { secrets: {}, other: { secrets: { s: 'x' } } };
    const copy = structuredClone(req);
    expect(redactSecrets(req)).toEqual({ secrets: {}, other: { secrets: '[REDACTED]' } });
    expect(req).toEqual(copy);
  });

  it('passes primitives through', () => {
    expect(redactSecrets('s')).toBe('s');
    expect(redactSecrets(5)).toBe(5);
    expect(redactSecrets(null)).toBe(null);
    expect(redactSecrets(undefined)).toBe(undefined);
  });

  it('a redacted request logged through pino carries no secret', () => {
    let text = '';
    const sink = new Writable({
      write(chunk, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    });
    const log = pino({ level: 'debug' }, sink);
    log.debug({ req: redactSecrets({ volume_id: 'v', secrets: { pw: 'sup3r-secret' } }) }, 'rpc request');
    expect(text).toContain('"volume_id":"v"');
    expect(text).not.toContain('sup3r-secret');
  });
});

describe('createLogger', () => {
  it("writes an err that is an object as it is, and an Error in pino's shape (type, message, stack)", () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger({ level: 'info', destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
    log.warn({ err: { type: 'DriverError', message: 'no volume v1' } }, 'rpc');
    log.error({ err: new TypeError('boom') }, 'failed');
    log.info({ err: 'a message' }, 'text');
    expect(lines[0]!.err).toEqual({ type: 'DriverError', message: 'no volume v1' });
    expect(lines[1]!.err).toMatchObject({ type: 'TypeError', message: 'boom', stack: expect.stringContaining('TypeError: boom') });
    expect(lines[2]!.err).toBe('a message');
    expect(lines[0]).toMatchObject({ name: 'hpp-csi-driver', level: 40, pid: process.pid });
  });
});
