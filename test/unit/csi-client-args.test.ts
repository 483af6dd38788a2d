/** hack/csi-client.mjs: sizes and command lines, checked before anything is called (no daemon, no build). */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../manifests/manifests.js';

const SCRIPT = path.join(ROOT, 'hack/csi-client.mjs');

interface ClientModule {
  parseSize(text: string): string;
  parseCommand(cmd: string, args: string[]): { request: Record<string, unknown> };
  COMMANDS: Record<string, unknown>;
  UsageError: new (msg: string) => Error;
}

const client = (await import(/* @vite-ignore */ pathToFileURL(SCRIPT).href)) as ClientModule;

describe('csi-client sizes', () => {
  it('bytes, binary Ki Mi Gi Ti and decimal K M G T', () => {
    expect(client.parseSize('1073741824')).toBe('1073741824');
    expect(client.parseSize('0')).toBe('0');
    expect(client.parseSize('10Gi')).toBe(String(10 * 1024 ** 3));
    expect(client.parseSize('1Ki')).toBe('1024');
    expect(client.parseSize('3Mi')).toBe(String(3 * 1024 ** 2));
    expect(client.parseSize('2Ti')).toBe(String(2n * 1024n ** 4n));
    expect(client.parseSize('5K')).toBe('5000');
    expect(client.parseSize('5M')).toBe('5000000');
    expect(client.parseSize('5G')).toBe('5000000000');
    expect(client.parseSize('5T')).toBe('5000000000000');
  });

  it('a clear error for anything else', () => {
    for (const bad of ['', '10GB', '10gi', '1.5Gi', '-1', ' 10Gi', '10 Gi', 'Gi', '10Pi', '0x10', '1e9']) {
      expect(() => client.parseSize(bad), bad).toThrow(/invalid size .*give bytes \(1073741824\), binary Ki Mi Gi Ti \(10Gi\) or decimal K M G T \(10G\)/);
    }
    expect(() => client.parseSize('8Ti'.replace('8', '9000000'))).toThrow(/more than an int64/);
  });
});

describe('csi-client commands', () => {
  it('create, restore and clone build CreateVolume requests, with the access type and parameters', () => {
    expect(client.parseCommand('create', ['vm1', '10Gi', 'mount', 'createDiskImage=true']).request).toEqual({
      name: 'vm1',
      capacity_range: { required_bytes: String(10 * 1024 ** 3) },
      volume_capabilities: [{ access_mode: { mode: 'SINGLE_NODE_WRITER' }, mount: {} }],
      parameters: { createDiskImage: 'true' },
    });
    expect(client.parseCommand('restore', ['r1', 'n:p:snap', '1Gi', 'block']).request).toMatchObject({
      name: 'r1',
      volume_capabilities: [{ block: {} }],
      volume_content_source: { snapshot: { snapshot_id: 'n:p:snap' } },
    });
    // No access type given: mount, and the rest are parameters.
    expect(client.parseCommand('clone', ['c1', 'n:p:vm1', '2G', 'filesystemOverhead=0.1']).request).toMatchObject({
      capacity_range: { required_bytes: '2000000000' },
      volume_capabilities: [{ mount: {} }],
      parameters: { filesystemOverhead: '0.1' },
      volume_content_source: { volume: { volume_id: 'n:p:vm1' } },
    });
  });

  it('snapshots, expansion and listing', () => {
    expect(client.parseCommand('create-snapshot', ['s1', 'n:p:vm1']).request).toEqual({ name: 's1', source_volume_id: 'n:p:vm1' });
    expect(client.parseCommand('delete-snapshot', ['n:p:s1']).request).toEqual({ snapshot_id: 'n:p:s1' });
    expect(client.parseCommand('list-snapshots', []).request).toEqual({});
    expect(client.parseCommand('list-snapshots', ['--source', 'n:p:vm1']).request).toEqual({ source_volume_id: 'n:p:vm1' });
    expect(client.parseCommand('list-snapshots', ['--id', 'n:p:s1']).request).toEqual({ snapshot_id: 'n:p:s1' });
    expect(client.parseCommand('expand', ['n:p:vm1', '20Gi', '/t', 'block']).request).toMatchObject({ id: 'n:p:vm1', bytes: String(20 * 1024 ** 3), target: '/t', capability: { block: {} } });
    expect(client.parseCommand('node-expand', ['n:p:vm1', '20Gi', '/t']).request).toMatchObject({ volume_id: 'n:p:vm1', volume_path: '/t', capacity_range: { required_bytes: String(20 * 1024 ** 3) } });
  });

  it('refuses wrong command lines with their usage', () => {
    expect(() => client.parseCommand('snapshot', [])).toThrow(/unknown command "snapshot"; one of: .*create-snapshot/);
    expect(() => client.parseCommand('restore', ['r1', 'n:p:s'])).toThrow(/usage: csi-client.mjs ENDPOINT restore NAME SNAPSHOT_ID SIZE/);
    expect(() => client.parseCommand('create', ['v', '10Gi', 'file'])).toThrow(/parameter "file": want key=value/);
    expect(() => client.parseCommand('publish', ['id', '/t', 'blok'])).toThrow(/access type "blok"/);
    expect(() => client.parseCommand('list-snapshots', ['--name', 'x'])).toThrow(/--source VOLUME_ID or --id SNAPSHOT_ID/);
    expect(() => client.parseCommand('delete-snapshot', [])).toThrow(/usage/);
    expect(() => client.parseCommand('toString', [])).toThrow(/unknown command/);
  });

  it('as a program: exit 2 and the message on stderr, before connecting to anything', () => {
    const r = spawnSync('node', [SCRIPT, 'unix:///nonexistent/csi.sock', 'create', 'vm1', '10GB'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('csi-client: invalid size "10GB"');
    const none = spawnSync('node', [SCRIPT], { encoding: 'utf8' });
    expect(none.status).toBe(2);
  });
});
