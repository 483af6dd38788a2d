import * as grpc from '@grpc/grpc-js';
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** Shared-token authentication between the routing controller and the node daemons. */
export const AUTH_HEADER = 'authorization';

/** Is the call's bearer token this one? Compared in constant time. */
export function hasToken(metadata: grpc.Metadata, token: string): boolean {
  const got = metadata.get(AUTH_HEADER)[0];
  if (typeof got !== 'string' || !got.startsWith('Bearer ')) return false;
  const a = Buffer.from(got.slice('Bearer '.length));
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function tokenMetadata(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(AUTH_HEADER, `Bearer ${token}`);
  return md;
}

export interface PeerTls {
  certFile: string;
  keyFile: string;
}

export function serverCredentials(tls?: PeerTls): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(tls.certFile), private_key: readFileSync(tls.keyFile) }], false);
}

export function channelCredentials(caFile?: string): grpc.ChannelCredentials {
  return caFile ? grpc.credentials.createSsl(readFileSync(caFile)) : grpc.credentials.createInsecure();
}
