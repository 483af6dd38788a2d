// What the endpoint claim reads from /proc to name the process holding a socket, and how it tells a
// live socket from a stale one.
import { linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { flockHolders, parseProcLocks, splitDev } from '../../src/system/proc-locks.js';
import { listeningInodes, parseProcNetUnix } from '../../src/system/proc-net-unix.js';
import { formatCmdline } from '../../src/system/processes.js';
import { MAX_SOCKET_PATH, bindName, probeUnixSocket } from '../../src/system/unix-socket.js';

const NET_UNIX = `Num       RefCount Protocol Flags    Type St Inode Path
000000004ee2f2aa: 00000002 00000000 00010000 0001 01 32494 /csi/csi.sock
00000000ace94150: 00000003 00000000 00000000 0001 03 32475 /csi/csi.sock
0000000011111111: 00000002 00000000 00010000 0001 01 40001 /csi/.csi.sock.bind
0000000022222222: 00000003 00000000 00000000 0001 03 40002
0000000033333333: 00000002 00000000 00010000 0001 01 40003 @/tmp/.X11-unix/X0
0000000044444444: 00000002 00000000 00010000 0005 01 40004 /run/with space.sock
0000000055555555: 00000002 00000000 00000000 0002 01 40005 /run/systemd/notify
`;

describe('/proc/net/unix', () => {
  it('parses inode, listening flag and path (spaces kept, abstract and unbound sockets too)', () => {
    const rows = parseProcNetUnix(NET_UNIX);
    expect(rows).toHaveLength(7);
    expect(rows[0]).toEqual({ inode: 32494, listening: true, path: '/csi/csi.sock' });
    expect(rows[1]).toEqual({ inode: 32475, listening: false, path: '/csi/csi.sock' });
    expect(rows[3]).toEqual({ inode: 40002, listening: false });
    expect(rows[4]!.path).toBe('@/tmp/.X11-unix/X0');
    expect(rows[5]).toEqual({ inode: 40004, listening: true, path: '/run/with space.sock' });
    expect(rows[6]!.listening).toBe(false);
  });

  it('listeningInodes: only listeners under the names asked for, not the connections they accepted', () => {
    const rows = parseProcNetUnix(NET_UNIX);
    expect(listeningInodes(rows, ['/csi/csi.sock'])).toEqual([32494]);
    expect(listeningInodes(rows, ['/csi/csi.sock', '/csi/.csi.sock.bind'])).toEqual([32494, 40001]);
    expect(listeningInodes(rows, ['/run/systemd/notify', '/nope'])).toEqual([]);
    expect(listeningInodes(parseProcNetUnix(''), ['/csi/csi.sock'])).toEqual([]);
  });
});

describe('/proc/locks', () => {
  const LOCKS = `1: FLOCK  ADVISORY  WRITE 24001 fe:00:9977988 0 EOF
1: -> FLOCK  ADVISORY  WRITE 24002 fe:00:9977988 0 EOF
2: POSIX  ADVISORY  WRITE 999 fe:00:9977988 0 EOF
3: FLOCK  ADVISORY  WRITE 0 103:02:123 0 EOF
4: OFDLCK ADVISORY  READ  -1 00:1f:77 0 EOF
`;

  it('parses type, waiter, pid, device and inode', () => {
    const rows = parseProcLocks(LOCKS);
    expect(rows).toHaveLength(5);
    expect(rows[0]).toEqual({ type: 'FLOCK', waiting: false, pid: 24001, major: 0xfe, minor: 0, inode: 9977988 });
    expect(rows[1]!.waiting).toBe(true);
    expect(rows[3]).toMatchObject({ pid: 0, major: 0x103, minor: 2 });
    expect(rows[4]).toMatchObject({ type: 'OFDLCK', pid: -1 });
  });

  it('splitDev decodes stat() device numbers as glibc makedev() encodes them', () => {
    expect(splitDev(65024n)).toEqual({ major: 0xfe, minor: 0 });
    expect(splitDev((8n << 8n) | 1n)).toEqual({ major: 8, minor: 1 });
    // major 259 (NVMe) and minor 300 spill into the high bits
    const dev = ((259n & 0xfffn) << 8n) | (300n & 0xffn) | ((300n & ~0xffn) << 12n);
    expect(splitDev(dev)).toEqual({ major: 259, minor: 300 });
  });

  it('flockHolders: the flock holders of that file only, not waiters, POSIX locks or other files', () => {
    const rows = parseProcLocks(LOCKS);
    expect(flockHolders(rows, { dev: 65024n, ino: 9977988n })).toEqual([24001]);
    expect(flockHolders(rows, { dev: (0x103n << 8n) | 2n, ino: 123n })).toEqual([0]);
    expect(flockHolders(rows, { dev: 65024n, ino: 123n })).toEqual([]);
  });
});

describe('command lines and names', () => {
  it('formatCmdline joins the NUL-separated arguments and cuts long ones', () => {
    expect(formatCmdline('node\0/app/hpp-csi-driver.js\0--endpoint\0unix:///csi/csi.sock\0')).toBe('node /app/hpp-csi-driver.js --endpoint unix:///csi/csi.sock');
    expect(formatCmdline('')).toBe('');
    const long = formatCmdline(`node\0${'x'.repeat(500)}\0`, 40);
    expect(long).toHaveLength(40);
    expect(long.endsWith('...')).toBe(true);
  });

  it('bindName: hidden, beside the socket, and only while it fits sun_path', () => {
    expect(bindName('/csi/csi.sock')).toBe('/csi/.csi.sock.bind');
    const dir = `/${'d'.repeat(MAX_SOCKET_PATH - 12)}`;
    expect(bindName(`${dir}/a.sock`)).toBeUndefined();
    expect(bindName(`/${'d'.repeat(MAX_SOCKET_PATH - 9)}/a`)!.length).toBe(MAX_SOCKET_PATH);
  });
});

describe('probeUnixSocket', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-probe-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('tells absent, not a socket, live and stale apart', async () => {
    const sock = path.join(dir, 's.sock');
    expect(await probeUnixSocket(sock)).toEqual({ state: 'absent' });
    writeFileSync(path.join(dir, 'file'), '');
    mkdirSync(path.join(dir, 'sub'));
    expect(await probeUnixSocket(path.join(dir, 'file'))).toEqual({ state: 'not-socket', what: 'a regular file' });
    expect(await probeUnixSocket(path.join(dir, 'sub'))).toEqual({ state: 'not-socket', what: 'a directory' });

    const server = net.createServer((c) => c.end());
    await new Promise<void>((r) => server.listen(sock, r));
    // A second name for the socket outlives the listener (Node removes only the name it bound).
    linkSync(sock, path.join(dir, 'left.sock'));
    expect(await probeUnixSocket(sock)).toEqual({ state: 'live' });
    await new Promise((r) => server.close(r));
    expect(await probeUnixSocket(path.join(dir, 'left.sock'))).toEqual({ state: 'stale' });
  });
});
