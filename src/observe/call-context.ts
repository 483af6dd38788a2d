import { randomBytes } from 'node:crypto';
import { cancelled } from '../errors.js';
import type { Logger } from './logger.js';

/**
 * Who work is done for: a CSI call (made by the request wrapper from the gRPC call, no gRPC here), or
 * the daemon itself (start-up, reconcile, trash sweeps: a root context). Passed down to the volume
 * manager and every tool run, so that a call its caller gave up on stops its tools and long jobs, and
 * every log line of the call carries its request id.
 */
export interface CallContext {
  /** Names the call in every log line (`requestId`), or "root" for work of the daemon's own. */
  readonly requestId: string;
  /** When the caller stops waiting (ms since the epoch), if it said. */
  readonly deadline?: number;
  /** Aborted when the caller cancels or the deadline passes; never for a root context. */
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/** A context nobody cancels, for work with no caller. */
export function rootContext(log: Logger): CallContext {
  return { requestId: 'root', signal: new AbortController().signal, log };
}

/** A call's context and the means to end it: cancel() when the caller gives up, done() when answered. */
export interface CallScope {
  readonly cx: CallContext;
  cancel(why: string): void;
  done(): void;
}

/**
 * A context for one call, its log a child of `log` with the request id; aborted by cancel() or when
 * `deadline` passes (its timer does not keep the process alive, and done() clears it).
 */
export function openCall(log: Logger, opts: { deadline?: number; requestId?: string } = {}): CallScope {
  const requestId = opts.requestId ?? randomBytes(6).toString('hex');
  const controller = new AbortController();
  const cancel = (why: string) => {
    if (!controller.signal.aborted) controller.abort(cancelled(`request ${requestId}: ${why}`));
  };
  let timer: NodeJS.Timeout | undefined;
  const deadline = opts.deadline !== undefined && Number.isFinite(opts.deadline) ? opts.deadline : undefined;
  if (deadline !== undefined) {
    timer = setTimeout(() => cancel('the deadline passed'), Math.max(0, deadline - Date.now()));
    timer.unref();
  }
  return {
    cx: { requestId, deadline, signal: controller.signal, log: log.child({ requestId }) },
    cancel,
    done: () => {
      if (timer) clearTimeout(timer);
    },
  };
}

/** The same call (its id, deadline and log) with a signal nobody aborts: for clean-up that must run once begun. */
export function uncancellable(cx: CallContext): CallContext {
  return { ...cx, signal: new AbortController().signal };
}

/** Throws the abort reason (a `cancelled` DriverError) when the work's caller gave up. */
export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

export function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : cancelled(`cancelled: ${String(signal.reason)}`);
}
