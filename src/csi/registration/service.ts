import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { LOADER_OPTIONS } from '../proto.js';
import type { Handler } from '../rpc.js';
import { packageRoot } from '../../util/package-root.js';

/** PluginInfo.type kubelet hands to its CSI plugin handler. */
export const CSI_PLUGIN_TYPE = 'CSIPlugin';
/** What node-driver-registrar answers too: kubelet's CSI handler needs a 1.x version. */
export const SUPPORTED_VERSIONS = ['1.0.0'];

export interface RegistrationPackage {
  Registration: grpc.ServiceClientConstructor;
}

let cached: RegistrationPackage | undefined;

/** kubelet's plugin registration API (proto/pluginregistration.proto). */
export function loadRegistration(): RegistrationPackage {
  if (cached) return cached;
  const def = protoLoader.loadSync(path.join(packageRoot(), 'proto', 'pluginregistration.proto'), LOADER_OPTIONS);
  cached = (grpc.loadPackageDefinition(def) as unknown as { pluginregistration: RegistrationPackage }).pluginregistration;
  return cached;
}

export interface RegistrationEvents {
  onInfo(): void;
  onStatus(registered: boolean, error: string): void;
}

/**
 * The Registration service: GetInfo names the driver and the CSI socket as kubelet reaches it
 * (`kubeletEndpoint`, a plain path on the host); NotifyRegistrationStatus hands kubelet's verdict on.
 */
/** The messages of proto/pluginregistration.proto as proto-loader gives them (LOADER_OPTIONS). */
export interface RegistrationHandlers {
  GetInfo: Handler<Record<string, never>, { type: string; name: string; endpoint: string; supported_versions: string[] }>;
  NotifyRegistrationStatus: Handler<{ plugin_registered: boolean; error: string }, Record<string, never>>;
}

export function registrationService(driverName: string, kubeletEndpoint: string, events: RegistrationEvents): RegistrationHandlers {
  return {
    async GetInfo() {
      events.onInfo();
      return { type: CSI_PLUGIN_TYPE, name: driverName, endpoint: kubeletEndpoint, supported_versions: SUPPORTED_VERSIONS };
    },
    async NotifyRegistrationStatus(req) {
      events.onStatus(req.plugin_registered === true, typeof req.error === 'string' ? req.error : '');
      return {};
    },
  };
}
