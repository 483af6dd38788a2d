import { PLUGIN_SERVICES, PLUGIN_VOLUME_EXPANSION } from './capabilities.js';
import type { DriverContext } from './context.js';
import type { Handler } from './rpc.js';

export function identityService(ctx: DriverContext): Record<string, Handler> {
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

    /** Ready only when every configured pool is there and writable (and its volumes are loaded). */
    async Probe() {
      const problems: string[] = [];
      for (const pool of ctx.volumes.poolList()) {
        const h = await pool.health();
        if (!h.ready) {
          problems.push(h.reason ?? pool.name);
          continue;
        }
        await ctx.volumes.ensureLoaded(pool.name).catch((err: Error) => problems.push(err.message));
      }
      if (problems.length > 0) ctx.log.warn({ problems }, 'probe: not ready');
      return { ready: { value: problems.length === 0 } };
    },
  };
}
