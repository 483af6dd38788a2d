import path from 'node:path';

/** Where a `unix:///abs/path` (or plain absolute path) endpoint puts its socket. */
export function socketPath(endpoint: string): string {
  const p = endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint;
  if (!path.isAbsolute(p)) throw new Error(`endpoint ${endpoint} must be unix:///absolute/path`);
  return p;
}
