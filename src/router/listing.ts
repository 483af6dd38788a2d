import type { PageRequest } from '../csi/paging.js';
import type { ListSnapshotsEntry } from '../csi/types.js';
import type { NodeSnapshots } from './nodes.js';

/** The id the next page starts after; a daemon always gives one (an entry without it cannot be paged). */
function idOf(e: ListSnapshotsEntry): string {
  const id = e.snapshot?.snapshot_id;
  if (!id) throw new Error(`a daemon listed a snapshot without an id: ${JSON.stringify(e)}`);
  return id;
}

/**
 * One page of an unfiltered ListSnapshots over several nodes, paged like a single sorted list with the
 * last id as token (csi/paging.ts).
 *
 * Every id of a node starts with `<node>:` and node names hold no ':', so the snapshots of one node are
 * one run of the sorted list and the runs sort by that prefix. Hence a page needs only the nodes from
 * the token's on: every node is asked at once (each bounded by its own deadline), but the page waits
 * for, and fails on, only the nodes it reaches. A node that does not answer fails exactly the pages
 * that would hold its snapshots, never silently leaves them out, and tokens stay valid across pages.
 */
export async function pageAcrossNodes(
  nodes: Iterable<string>,
  list: (node: string, after: string) => Promise<NodeSnapshots>,
  { max, token }: PageRequest,
): Promise<{ entries: ListSnapshotsEntry[]; next_token: string }> {
  const ordered = [...nodes]
    .map((node) => ({ node, prefix: `${node}:` }))
    .filter(({ prefix }) => !token || token.startsWith(prefix) || prefix > token)
    .sort((x, y) => (x.prefix < y.prefix ? -1 : x.prefix > y.prefix ? 1 : 0));
  const answers = ordered.map(({ node, prefix }) => {
    const answer = list(node, token.startsWith(prefix) ? token : '');
    answer.catch(() => {}); // a node the page never reaches: its failure does not matter
    return answer;
  });
  const page: ListSnapshotsEntry[] = [];
  for (const [i, answer] of answers.entries()) {
    const { entries, more } = await answer;
    const room = max > 0 ? max - page.length : entries.length;
    page.push(...entries.slice(0, room));
    if (max > 0 && page.length === max) {
      // More may follow: in this node, or in a later one (not waited for; its page will tell).
      const rest = entries.length > room || more || i < answers.length - 1;
      return { entries: page, next_token: rest ? idOf(page[page.length - 1]!) : '' };
    }
  }
  return { entries: page, next_token: '' };
}
