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

    /**
     * Ready only when every configured pool is loaded, present and writable. A pool not loaded yet is
     * loaded here (a device pool is formatted if blank and mounted), so pools that appear later come in.
     */
    async Probe() {
      const problems: string[] = [];
      for (const pool of ctx.volumes.poolList()) {
        try {
          await ctx.volumes.ensureLoaded(pool.name);
        } catch (err) {
          problems.push((err as Error).message);
          continue;
        }
        const h = await pool.health();
        if (!h.ready) problems.push(h.reason ?? pool.name);
      }
      if (problems.length > 0) ctx.log.warn({ problems }, 'probe: not ready');
      return { ready: { value: problems.length === 0 } };
    },
  };
}
