#!/usr/bin/env node
import { DriverApp } from '../src/app.js';
import { USAGE, parseCli } from '../src/config/options.js';
import { EndpointTakenError } from '../src/csi/socket-claim.js';
import { createLogger } from '../src/observe/logger.js';
import { ConfigError } from '../src/pools/config.js';
import { mountBackendFromEnv } from '../src/system/native-mount.js';
import { VERSION } from '../src/version.js';

/** One line, as hppctl's: a log collector keeps it whole, and the usage is a --help away. Exit 2. */
function configError(err: ConfigError): never {
  process.stderr.write(`hpp-csi-driver: ${err.message.replace(/\s*\n\s*/g, ' ')} (hpp-csi-driver --help lists the flags)\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  let opts;
  try {
    opts = parseCli(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) configError(err);
    throw err;
  }
  if (opts.showVersion) {
    process.stdout.write(`hpp-csi-driver ${VERSION}\n`);
    return;
  }
  if (opts.showHelp) {
    process.stdout.write(USAGE);
    return;
  }
  const log = createLogger({ level: opts.logLevel });
  const app = new DriverApp({ ...opts, mountBackend: mountBackendFromEnv(process.env) }, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      // Ctrl-C again at a terminal: stop waiting for in-flight calls. A repeated SIGTERM changes nothing.
      if (signal === 'SIGINT') {
        log.warn({ signal }, 'second interrupt: exiting now');
        process.exit(1);
      }
      return;
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    app.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err: String(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await app.start();
}

main().catch((err) => {
  // Found only at start (a registration directory missing, a peer address not listenable).
  if (err instanceof ConfigError) configError(err);
  // An endpoint taken is an expected refusal: its message says it all.
  const text = err instanceof EndpointTakenError ? err.message : err instanceof Error ? err.stack : String(err);
  process.stderr.write(`hpp-csi-driver: ${text}\n`);
  process.exit(1);
});
