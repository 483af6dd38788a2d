import { describe, expect, it } from 'vitest';
import { closestWord, didYouMean } from '../../src/util/did-you-mean.js';
import { parseParameters } from '../../src/volumes/parameters.js';

describe('closestWord', () => {
  const KEYS = ['name', 'path', 'device', 'overcommitRatio', 'filesystemOverhead', 'useNamingPrefix'];

  it('finds the word in another case, a typo, a swap of two letters', () => {
    expect(closestWord('overcommitratio', KEYS)).toBe('overcommitRatio');
    expect(closestWord('PATH', KEYS)).toBe('path');
    expect(closestWord('devcie', KEYS)).toBe('device');
    expect(closestWord('filesystemOverheads', KEYS)).toBe('filesystemOverhead');
    expect(closestWord('useNamingPrefx', KEYS)).toBe('useNamingPrefix');
  });

  it('suggests nothing for a word that is not close', () => {
    expect(closestWord('size', KEYS)).toBeUndefined();
    expect(closestWord('x', KEYS)).toBeUndefined();
    expect(closestWord('overcommit', [])).toBeUndefined();
    expect(didYouMean('size', KEYS)).toBe('');
    expect(didYouMean('nmae', KEYS)).toBe(' (did you mean "name"?)');
  });

  it('the StorageClass parameters use it too', () => {
    expect(() => parseParameters({ storagepool: 'x' })).toThrow('unknown parameter "storagepool" (did you mean "storagePool"?); this driver understands');
    expect(() => parseParameters({ colour: 'x' })).toThrow(/unknown parameter "colour"; this driver understands/);
  });
});
