/**
 * The known word a misspelt one was probably meant to be: the same word in another case, or the nearest
 * within a few edits (a third of its length, at least one). undefined when none is close enough.
 */
export function closestWord(word: string, known: Iterable<string>): string | undefined {
  const candidates = [...known];
  const lower = word.toLowerCase();
  const sameCase = candidates.find((k) => k.toLowerCase() === lower);
  if (sameCase !== undefined) return sameCase;
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const k of candidates) {
    const d = editDistance(lower, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/** ` (did you mean "x"?)` for an unknown word, or ''. */
export function didYouMean(word: string, known: Iterable<string>): string {
  const k = closestWord(word, known);
  return k === undefined ? '' : ` (did you mean ${JSON.stringify(k)}?)`;
}

/** Levenshtein distance, a swap of two neighbours counting as one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
