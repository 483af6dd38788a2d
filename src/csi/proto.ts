import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { packageRoot } from '../util/package-root.js';
import type { ProtoGrpcType } from './gen/csi.js';

/**
 * Options that give int64 as strings, enums as names, oneofs as a virtual field, unset messages as null.
 * src/csi/gen/ is generated with the same ones (npm run gen:proto; test/unit/proto-gen.test.ts checks).
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The csi.v1 package: typed clients (new Controller(...)) and service definitions (Controller.service). */
export type CsiPackage = ProtoGrpcType['csi']['v1'];

let cached: CsiPackage | undefined;

export function loadCsi(): CsiPackage {
  if (cached) return cached;
  const def = protoLoader.loadSync(path.join(packageRoot(), 'proto', 'csi.proto'), LOADER_OPTIONS);
  cached = (grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType).csi.v1;
  return cached;
}
