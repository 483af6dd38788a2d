/**
 * Unfiltered ListSnapshots across nodes (src/router/listing.ts): one sorted list paged by last id, in
 * which a node that does not answer fails exactly the pages that reach its snapshots.
 */
import { describe, expect, it } from 'vitest';
import { unavailable } from '../../src/errors.js';
import type { Msg } from '../helpers/driver.js';
import { pageAcrossNodes } from '../../src/router/listing.js';
import type { NodeSnapshots } from '../../src/router/nodes.js';

/** Daemons that hold these snapshot ids and answer as the daemon does (after `after`, at most `max`). */
function fleet(held: Record<string, string[]>, down: string[] = []) {
  const asked: Array<{ node: string; after: string }> = [];
  const list = (max: number) => async (node: string, after: string): Promise<NodeSnapshots> => {
    asked.push({ node, after });
    if (down.includes(node)) throw unavailable(`node ${node} did not answer`);
    const rest = [...held[node]!].sort().filter((id) => !after || id > after);
    const entries = (max > 0 ? rest.slice(0, max) : rest).map((id): Msg => ({ snapshot: { snapshot_id: id } }));
    return { entries, more: entries.length < rest.length };
  };
  return { asked, list };
}
const ids = (page: { entries: Msg[] }) => page.entries.map((e) => e.snapshot.snapshot_id as string);

/** Every page from the start, as a CO pages through. */
async function walk(nodes: string[], list: (max: number) => (node: string, after: string) => Promise<NodeSnapshots>, max: number): Promise<string[][]> {
  const pages: string[][] = [];
  let token = '';
  do {
    const page = await pageAcrossNodes(nodes, list(max), { max, token });
    pages.push(ids(page));
    token = page.next_token;
  } while (token && pages.length < 50);
  return pages;
}

describe('pageAcrossNodes', () => {
  // Ids of these nodes sort by `<node>:`, whatever the names look like: "n10:" < "n1:" < "n:" (':' is after the digits).
  const held = { n: ['n:p:b', 'n:p:a'], n1: ['n1:p:b', 'n1:p:a', 'n1:q:a'], n10: ['n10:p:z', 'n10:p:a'], empty: [] };
  const all = ['n', 'empty', 'n1', 'n10'];
  const sorted = Object.values(held).flat().sort();

  it('gives one sorted list, whole or in pages of any size, with every entry exactly once', async () => {
    const { list } = fleet(held);
    expect(sorted).toEqual(['n10:p:a', 'n10:p:z', 'n1:p:a', 'n1:p:b', 'n1:q:a', 'n:p:a', 'n:p:b']);
    expect(ids(await pageAcrossNodes(all, list(0), { max: 0, token: '' }))).toEqual(sorted);
    for (const max of [1, 2, 3, 4, 5, 6, 7]) {
      const pages = await walk(all, list, max);
      expect(pages.flat(), `pages of ${max}`).toEqual(sorted);
      for (const p of pages.slice(0, -1)) expect(p).toHaveLength(max);
    }
  });

  it("asks only the nodes at or after the token, and the token's node for what follows it", async () => {
    const { asked, list } = fleet(held);
    const page = await pageAcrossNodes(all, list(2), { max: 2, token: 'n1:p:a' });
    expect(ids(page)).toEqual(['n1:p:b', 'n1:q:a']);
    expect(page.next_token).toBe('n1:q:a');
    const byNode = (x: { node: string }, y: { node: string }) => (x.node < y.node ? -1 : 1);
    expect(asked.sort(byNode)).toEqual([
      { node: 'n', after: '' },
      { node: 'n1', after: 'n1:p:a' },
    ]);
  });

  it('a node that does not answer fails the pages that reach its snapshots, and no other', async () => {
    const { asked, list } = fleet(held, ['n1']);
    await expect(pageAcrossNodes(all, list(0), { max: 0, token: '' })).rejects.toThrow(/node n1 did not answer/);
    // n10's snapshots come before n1's: their page needs nothing from n1.
    const first = await pageAcrossNodes(all, list(2), { max: 2, token: '' });
    expect(ids(first)).toEqual(['n10:p:a', 'n10:p:z']);
    expect(first.next_token, 'more may follow on n1').toBe('n10:p:z');
    await expect(pageAcrossNodes(all, list(2), { max: 2, token: first.next_token })).rejects.toThrow(/node n1 did not answer/);
    // A page after n1's snapshots does not ask it.
    asked.length = 0;
    expect(ids(await pageAcrossNodes(all, list(2), { max: 2, token: 'n:p:a' }))).toEqual(['n:p:b']);
    expect(asked).toEqual([{ node: 'n', after: 'n:p:a' }]);
  });

  it('the last page has no token; a page that ends on a node with nothing after it neither', async () => {
    const { list } = fleet({ n1: ['n1:p:a'], n2: ['n2:p:a'] });
    const last = await pageAcrossNodes(['n1', 'n2'], list(1), { max: 1, token: 'n1:p:a' });
    expect(ids(last)).toEqual(['n2:p:a']);
    expect(last.next_token).toBe('');
    expect(await pageAcrossNodes([], list(1), { max: 1, token: '' })).toEqual({ entries: [], next_token: '' });
  });
});
