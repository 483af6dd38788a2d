#!/usr/bin/env node
// Entry point of the pool device pod: publishes the pod's Block PVC device for the driver daemon and
// keeps running, so the PVC stays mapped. See src/pools/device-publisher.ts and deploy/pool-template/.
import { createLogger } from '../src/observe/logger.js';
import { ConfigError } from '../src/pools/config.js';
import { PUBLISHER_USAGE, PublishError, parsePublisherCli, publishDevice } from '../src/pools/device-publisher.js';
import { VERSION } from '../src/version.js';

const NAME = 'hpp-pool-device';

async function main(): Promise<void> {
  let opts;
  try {
    opts = parsePublisherCli(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${NAME}: ${err.message}\n\n${PUBLISHER_USAGE}`);
      process.exit(2);
    }
    throw err;
  }
  if (opts.showVersion) {
    process.stdout.write(`${NAME} ${VERSION}\n`);
    return;
  }
  if (opts.showHelp) {
    process.stdout.write(PUBLISHER_USAGE);
    return;
  }

  const log = createLogger({ name: NAME });

  // Installed before publishing: a pod deleted while it starts still exits 0. The node is left in place
  // on purpose: the daemon may have the filesystem mounted (the kernel holds its own reference to the
  // device), and a restarted daemon finds the pool again through it.
  let publishing: Promise<unknown> = Promise.resolve();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, publishPath: opts.publishPath }, 'stopping; the published node stays in place');
    void publishing.finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  log.info({ version: VERSION, device: opts.device, publishPath: opts.publishPath }, 'publishing pool device');
  const p = publishDevice(opts.device, opts.publishPath, log);
  publishing = p.catch(() => {});
  let result;
  try {
    result = await p;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.error({ device: opts.device, publishPath: opts.publishPath, err: message }, 'cannot publish the pool device');
    process.stderr.write(`${NAME}: ${message}\n`);
    process.exit(err instanceof PublishError ? 3 : 1);
  }
  if (stopping) return;
  log.info({ ...result }, 'holding the pool device until SIGTERM');
  // Keep the event loop alive; the signal handlers end the process.
  setInterval(() => {}, 1 << 30);
}

main().catch((err) => {
  process.stderr.write(`${NAME}: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
