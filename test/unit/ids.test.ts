import { describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { statusOf } from '../../src/csi/status.js';
import { DriverError } from '../../src/errors.js';
import { checkName, formatVolumeId, isValidName, isValidNodeName, parseVolumeId } from '../../src/volumes/ids.js';

describe('volume ids', () => {
  it('format and parse round-trip', () => {
    for (const ref of [
      { node: 'test-node', pool: 'default', name: 'pvc-1234' },
      { node: 'worker-7.example.com', pool: 'fast-ssd', name: 'a' },
      { node: 'N1', pool: '0', name: `x${'y'.repeat(127)}` },
      { node: 'node', pool: 'p', name: 'pvc-0f1e2d3c.4b5a_6978' },
    ]) {
      const id = formatVolumeId(ref);
      expect(id).toBe(`${ref.node}:${ref.pool}:${ref.name}`);
      expect(parseVolumeId(id)).toEqual(ref);
    }
  });

  it('rejects ids that are not ours or would make paths', () => {
    for (const id of [
      '',
      'garbage',
      'a:b',
      'a:b:c:d',
      'node:pool:',
      ':pool:name',
      'node::name',
      'node:pool:..',
      'node:pool:.',
      'node:pool:../../etc',
      'node:pool:a/b',
      'node:pool:a\u0000b',
      'node:Pool:name', // pool names are lower case
      'node:-pool:name',
      'node:pool-:name',
      `node:${'p'.repeat(64)}:name`,
      `node:pool:${'n'.repeat(129)}`,
      'node:pool:.hidden',
      'node:pool: space',
      '-node:pool:name',
      'no de:pool:name',
      'node/x:pool:name',
    ]) {
      expect(parseVolumeId(id), JSON.stringify(id)).toBeUndefined();
    }
  });

  it('name checks: 1-128 of [A-Za-z0-9._-], starting with a letter or digit', () => {
    expect(isValidName('a')).toBe(true);
    expect(isValidName(`a${'-'.repeat(127)}`)).toBe(true);
    expect(isValidName(`a${'-'.repeat(128)}`)).toBe(false);
    for (const bad of ['', '.', '..', '.a', '-a', '_a', 'a/b', 'a\\b', 'a b', 'a\u0000', 'ä', 'a\n']) {
      expect(isValidName(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('checkName throws INVALID_ARGUMENT and keeps the message short for huge names', () => {
    expect(checkName('volume', 'ok-name')).toBe('ok-name');
    for (const bad of ['', '../x', 'x'.repeat(100_000)]) {
      let err: unknown;
      try {
        checkName('volume', bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DriverError);
      expect(statusOf(err)).toBe(status.INVALID_ARGUMENT);
      expect((err as DriverError).message.length).toBeLessThan(400);
    }
  });

  it('node names: DNS-subdomain-like, up to 253 characters', () => {
    expect(isValidNodeName('worker-1.example.com')).toBe(true);
    expect(isValidNodeName('a')).toBe(true);
    expect(isValidNodeName('a'.repeat(253))).toBe(true);
    expect(isValidNodeName('a'.repeat(254))).toBe(false);
    for (const bad of ['', '-a', 'a-', 'a b', 'a:b', 'a/b', '.a']) expect(isValidNodeName(bad), bad).toBe(false);
  });
});
