import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

const SECRET_KEYS = new Set(['secrets']);

/** Deep copy of a request with every field named like a CSI secret map replaced by a marker. */
export function redactSecrets(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (SECRET_KEYS.has(k)) {
      out[k] = v && typeof v === 'object' && Object.keys(v).length === 0 ? {} : '[REDACTED]';
    } else {
      out[k] = redactSecrets(v, depth + 1);
    }
  }
  return out;
}

/** The daemon's logger: JSON lines to stdout, or to `destination` (tests). */
export function createLogger(opts: { level?: string; name?: string; destination?: DestinationStream } = {}): Logger {
  const options = {
    name: opts.name ?? 'hpp-csi-driver',
    level: opts.level ?? process.env.LOG_LEVEL ?? 'info',
    // Belt and braces: redactSecrets() already strips these before logging.
    redact: { paths: ['req.secrets', '*.secrets', 'secrets'], censor: '[REDACTED]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // pino's err serializer takes anything with a message for an Error: it would turn the request
    // wrapper's {type, message, stack?} into {type: "Object", ..., stack: ""}. Errors still get it.
    serializers: { err: (e: unknown) => (e instanceof Error ? pino.stdSerializers.err(e) : e) },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** A logger that writes nothing, for library use and unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
