import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError, parseAdminCli } from '../../src/admin/cli.js';

describe('parseAdminCli', () => {
  it('takes one command, pool definitions (NAME=PATH) and pool filters (NAME) from --pool', () => {
    const c = parseAdminCli(['--pool', 'a=/p/a', '--pool', 'b=/p/b:overcommit=2', 'volumes', '--pool', 'b', '--json'], {});
    expect(c.command).toBe('volumes');
    expect(c.json).toBe(true);
    expect(c.only).toEqual(['b']);
    expect(c.pools.map((p) => [p.name, p.path, p.overcommitRatio])).toEqual([
      ['a', '/p/a', 1],
      ['b', '/p/b', 2],
    ]);
  });

  it('reads pools from the same environment variables as the daemon, flags first', () => {
    expect(parseAdminCli(['pools'], { HPP_POOLS: 'x=/x,y=/y' }).pools.map((p) => p.name)).toEqual(['x', 'y']);
    expect(parseAdminCli(['pools', '--pool', 'z=/z'], { HPP_POOLS: 'x=/x' }).pools.map((p) => p.name)).toEqual(['z']);
    // A filter alone does not replace the environment's pools.
    expect(parseAdminCli(['pools', '--pool', 'y'], { HPP_POOLS: 'x=/x,y=/y' }).only).toEqual(['y']);
    expect(parseAdminCli(['pools'], { HPP_POOLS_JSON: '[{"name":"j","path":"/j"}]' }).pools[0]).toMatchObject({ name: 'j', path: '/j' });
    expect(parseAdminCli(['pools'], { HPP_HOSTPATH: '/var/hpvolumes' }).pools[0]).toMatchObject({ name: 'legacy', path: '/var/hpvolumes' });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hppctl-cli-'));
    try {
      writeFileSync(`${dir}/pools.json`, '[{"name":"f","path":"/f","device":"/dev/sdz"}]');
      expect(parseAdminCli(['pools', '--pools-file', `${dir}/pools.json`], {}).pools[0]).toMatchObject({ name: 'f', device: '/dev/sdz' });
      expect(() => parseAdminCli(['pools', '--pools-file', `${dir}/missing.json`], {})).toThrow(/cannot read the pools file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ignores the daemon settings hppctl has no use for (an odd NODE_NAME or endpoint does not matter)', () => {
    const c = parseAdminCli(['pools'], { HPP_POOLS: 'x=/x', NODE_NAME: 'Not A Node!', CSI_ENDPOINT: 'tcp://x', DRIVER_NAME: '-' });
    expect(c.pools).toHaveLength(1);
  });

  it('gc flags', () => {
    const c = parseAdminCli(['--pool', 'a=/a', 'gc', '--dry-run', '--force', '--include-records', '--include-directories'], {});
    expect(c).toMatchObject({ command: 'gc', dryRun: true, force: true, includeRecords: true, includeDirectories: true });
  });

  it('usage errors', () => {
    const bad: string[][] = [
      [],
      ['--pool', 'a=/a'],
      ['--pool', 'a=/a', 'frobnicate'],
      ['--pool', 'a=/a', 'pools', 'volumes'],
      ['--pool', 'a=/a', 'pools', '--bogus'],
      ['--pool', 'a=/a', 'volumes', '--dry-run'],
      ['--pool', 'a=/a', 'orphans', '--force'],
      ['--pool', 'a=/a', 'volumes', '--pool', 'b'],
      ['--pool', 'a=relative', 'pools'],
      ['--pool', 'a=/a', '--pool', 'a=/b', 'pools'],
      ['--pool', 'a=/a', '--pool', 'b=/a/b', 'pools'],
      ['pools'],
    ];
    for (const argv of bad) expect(() => parseAdminCli(argv, {}), argv.join(' ')).toThrow(UsageError);
  });

  it('--help and --version need no pools', () => {
    expect(parseAdminCli(['--help'], {}).showHelp).toBe(true);
    expect(parseAdminCli(['help'], {}).showHelp).toBe(true);
    expect(parseAdminCli(['--version'], {}).showVersion).toBe(true);
  });
});
