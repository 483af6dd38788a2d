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
  /** Aborted when the caller cancels before its deadline (see openCall); never for a root context. */
  readonly signal: AbortSignal;
  /** Carries the request id and the fields (below) on every line. */
  readonly log: Logger;
  /**
   * What the call is about, beyond its request id: the volume, target, PVC or pod (see annotate()).
   * The host logs a call's tool runs with them; `log` carries them already.
   */
  readonly fields: Readonly<Record<string, string>>;
}

/** A context nobody cancels, for work with no caller. Nothing is ever annotated on it: it is shared. */
export function rootContext(log: Logger): CallContext {
  return { requestId: 'root', signal: new AbortController().signal, log, fields: ROOT_FIELDS };
}

const ROOT_FIELDS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * Names what the call is about on every later line of it: its log's (which the request wrapper's
 * `rpc` line is written to), its tool runs'. A field already set keeps its value (a line never has a
 * key twice); undefined and empty values are left out. On a root context (shared by the daemon's own
 * work) it does nothing.
 */
export function annotate(cx: CallContext, fields: Record<string, string | undefined>): void {
  if (Object.isFrozen(cx.fields)) return;
  const bound = cx.fields as Record<string, string>;
  const fresh: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === '' || Object.hasOwn(bound, k) || k === 'requestId') continue;
    fresh[k] = v;
  }
  if (Object.keys(fresh).length === 0) return;
  Object.assign(bound, fresh);
  cx.log.setBindings(fresh);
}

/** A call's context and the means to end it: cancel() when the caller gives up. */
export interface CallScope {
  readonly cx: CallContext;
  cancel(why: string): void;
}

/**
 * How close to its deadline a cancel counts as the caller timing out. grpc-go cancels the stream at its
 * own deadline, which comes a little before the one computed here from the grpc-timeout header (the
 * header's transit and parse), so its timeout arrives as a cancel shortly before our deadline.
 */
export const DEADLINE_SLACK_MS = 1_000;

/**
 * A context for one call, its log a child of `log` with the request id; aborted by cancel() when the
 * caller gives up before its deadline. A caller whose deadline passes (or that cancels within
 * DEADLINE_SLACK_MS of it) has timed out, which is not giving up: COs retry a timed-out call with the
 * same request, and that retry waits for this one under its locks and then finds the work done. So the
 * work goes on: a VM disk whose copy or preallocation takes longer than the sidecar's timeout is made
 * by its first call instead of being killed and started again by every retry.
 */
export function openCall(log: Logger, opts: { deadline?: number; requestId?: string; fields?: Record<string, string | undefined> } = {}): CallScope {
  const requestId = opts.requestId ?? randomBytes(6).toString('hex');
  const controller = new AbortController();
  const deadline = opts.deadline !== undefined && Number.isFinite(opts.deadline) ? opts.deadline : undefined;
  const callLog = log.child({ requestId });
  let timedOut = false;
  const cancel = (why: string) => {
    if (controller.signal.aborted || timedOut) return;
    if (deadline !== undefined && Date.now() >= deadline - DEADLINE_SLACK_MS) {
      timedOut = true;
      callLog.info({ deadline: new Date(deadline).toISOString() }, 'the caller timed out; the work goes on, for its retry to find');
      return;
    }
    controller.abort(cancelled(`request ${requestId}: ${why}`));
  };
  const cx: CallContext = { requestId, deadline, signal: controller.signal, log: callLog, fields: {} };
  if (opts.fields) annotate(cx, opts.fields);
  return { cx, cancel };
}

/** The same call (its id, deadline, log and fields) with a signal nobody aborts: for clean-up that must run once begun. */
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
