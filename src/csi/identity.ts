import { readiness } from '../observe/health.js';
import { PLUGIN_SERVICES, PLUGIN_VOLUME_EXPANSION } from './capabilities.js';
import type { DriverContext } from './context.js';
import type { IdentityHandlers } from './types.js';

export function identityService(ctx: DriverContext): IdentityHandlers {
  return {
    async GetPluginInfo() {
      return { name: ctx.driverName, vendor_version: ctx.version, manifest: {} };
    },

    async GetPluginCapabilities() {
      return {
        capabilities: [
          ...PLUGIN_SERVICES.map((type) => ({ service: { type } })),
          { volume_expansion: { type: PLUGIN_VOLUME_EXPANSION } },
        ],
      };
    },

    /** Ready only when every configured pool is ready in the supervisor, present and writable (see poolStatuses); prepares nothing. */
    async Probe() {
      const { ok, problems } = await readiness(ctx.volumes);
      if (!ok) ctx.log.warn({ problems }, 'probe: not ready');
      return { ready: { value: ok } };
    },
  };
}
