import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { packageRoot } from '../util/package-root.js';

/** Options that give int64 as strings, enums as names, oneofs as a virtual field, unset messages as null. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export interface CsiPackage {
  Identity: grpc.ServiceClientConstructor;
  Controller: grpc.ServiceClientConstructor;
  Node: grpc.ServiceClientConstructor;
}

let cached: CsiPackage | undefined;

export function loadCsi(): CsiPackage {
  if (cached) return cached;
  const def = protoLoader.loadSync(path.join(packageRoot(), 'proto', 'csi.proto'), LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as { csi: { v1: CsiPackage } };
  cached = pkg.csi.v1;
  return cached;
}
