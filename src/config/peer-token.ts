import { readFileSync } from 'node:fs';

/** The shared token of the routing controller and the node daemons, read from its file. */
export function readToken(file: string): string {
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16) throw new Error(`peer token in ${file} is too short (need at least 16 characters)`);
  return token;
}
