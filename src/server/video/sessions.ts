/**
 * Video session lifecycle for the server: which sessions are open, on which engine, who is using
 * them. A session is pinned to one worker (its device) at start: the least-loaded of the devices
 * its gpu_ids allow. The library's VideoSession runs a session's operations one at a time and
 * refuses them during a propagation (ERR_SAM3_SESSION_BUSY, 409); this manager adds what only a
 * server has: ids, limits, idle expiry, and closing, which cancels the propagation and then frees
 * the session.
 *
 * Sessions unused for SESSION_IDLE_TIMEOUT_SECONDS are closed by a timer (a propagating session
 * is never idle), and close() frees them all at shutdown. Every close ends in dispose(), which
 * frees the tracker's native memory and the frame decoder.
 */
import { randomUUID } from 'node:crypto';

import type { Logger } from 'pino';

import { ErrorCode, type FrameResult, type FrameSource, openVideo, type PromptResult, type PropagateOptions, Sam3Error, type SessionStatus, type VideoInfo, type VideoPrompt, type VideoSession } from '../../index.js';
import { shuttingDown } from '../core/errors.js';
import type { ServerConfig } from '../core/config.js';
import type { ReplicaIds } from '../core/replica.js';
import type { ModelPool, Worker } from '../devices/workers.js';
import type { CloseReason, PropagationOutcome, VideoMetrics } from './metrics.js';

/** Share of VIDEO_FRAME_CACHE_MB for decoded frames; the rest caches the tracker's per-frame features. */
const FRAME_SHARE = 0.25;

export interface SessionManagerOptions {
  config: ServerConfig['video'];
  /** The loaded engines; throws a 503 while the model loads. */
  pool(): ModelPool;
  metrics: VideoMetrics;
  logger: Logger;
  /** Session ids carry this replica's name (REPLICA_ID). */
  ids: ReplicaIds;
  /** Clock for idle expiry (tests). Default Date.now. */
  now?: () => number;
}

export interface OpenRequest {
  /** Absolute path of the video (already resolved inside MEDIA_ROOT). */
  path: string;
  /** What the client named, for listings. */
  videoPath?: string;
  videoId?: string;
  sessionId?: string;
  gpuIds?: number[];
}

export interface PropagationSummary {
  frames: number;
  ms: number;
  /** Stopped early by the caller's signal. */
  cancelled: boolean;
}

export class ManagedSession {
  readonly createdAt: number;
  lastUsed: number;
  /** Set when close() starts: the session is out of the table and refuses every operation. */
  closing = false;
  /** The running propagation's cancel switch (the library's session holds the busy state). */
  propagation: { controller: AbortController; done: Promise<void> } | undefined;

  constructor(
    readonly id: string,
    readonly worker: Worker,
    readonly session: VideoSession,
    readonly source: { videoPath: string | null; videoId: string | null },
    now: number,
  ) {
    this.createdAt = now;
    this.lastUsed = now;
  }

  get info(): VideoInfo {
    return this.session.info;
  }

  get device(): string {
    return this.worker.label;
  }

  get propagating(): boolean {
    return this.session.propagating;
  }

  status(): SessionStatus {
    return this.session.status();
  }
}

export class SessionManager {
  private readonly sessions = new Map<string, ManagedSession>();
  /** Ids being opened (reserved) and the worker each is going to. */
  private readonly opening = new Map<string, Worker>();
  private readonly pendingOpens = new Set<Promise<unknown>>();
  private readonly closes = new Set<Promise<void>>();
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: SessionManagerOptions) {
    this.now = options.now ?? Date.now;
    const every = Math.min(30_000, Math.max(50, options.config.idleTimeoutMs / 4));
    this.timer = setInterval(() => this.sweep(), every);
    this.timer.unref();
    options.metrics.attach({ perDevice: () => this.perDevice() });
  }

  get size(): number {
    return this.sessions.size;
  }

  get maxSessions(): number {
    return this.options.config.maxSessions;
  }

  list(): ManagedSession[] {
    return [...this.sessions.values()];
  }

  has(id: string): boolean {
    return this.sessions.has(id);
  }

  /** The open session, or a 404. */
  get(id: string): ManagedSession {
    const s = this.sessions.get(id);
    if (!s) throw sessionNotFound(id);
    return s;
  }

  /** Marks the session used now (idle expiry counts from the last use). */
  touch(s: ManagedSession): void {
    s.lastUsed = this.now();
  }

  /** When an unused session expires (ms epoch on the manager's clock); undefined while propagating. */
  expiresAt(s: ManagedSession): number | undefined {
    if (s.propagating) return undefined;
    return s.lastUsed + this.options.config.idleTimeoutMs;
  }

  /** Opens a video and a tracker session on the least-loaded allowed worker. */
  async open(req: OpenRequest, log: Logger): Promise<ManagedSession> {
    if (this.closed) throw shuttingDown();
    const pool = this.options.pool();
    const workers = this.allowedWorkers(pool, req.gpuIds);
    workers[0]!.model.requireTracker(); // 501 before anything is opened
    const id = this.options.ids.mint(req.sessionId ?? randomUUID());
    if (this.sessions.has(id) || this.opening.has(id)) {
      throw new Sam3Error(ErrorCode.SessionExists, `a session with id '${id}' is already open; choose another session_id or leave it out for a random one`, { session_id: id });
    }
    const { maxSessions } = this.options.config;
    if (this.sessions.size + this.opening.size >= maxSessions) {
      const retry = this.retryAfterSeconds();
      throw new Sam3Error(
        ErrorCode.TooManySessions,
        `${maxSessions} video sessions are open (MAX_SESSIONS); close one with DELETE /api/v1/video/session/{session_id} or retry after ${retry} s, when an idle one may have expired`,
        { max_sessions: maxSessions, retry_after_seconds: retry },
        { retryAfterSeconds: retry },
      );
    }
    const worker = this.leastLoaded(workers);
    this.opening.set(id, worker);
    const opened = this.openOn(worker, id, req, log);
    this.pendingOpens.add(opened);
    try {
      return await opened;
    } finally {
      this.pendingOpens.delete(opened);
      this.opening.delete(id);
    }
  }

  private async openOn(worker: Worker, id: string, req: OpenRequest, log: Logger): Promise<ManagedSession> {
    const budget = this.options.config.frameCacheBytes;
    const frameBytes = Math.floor(budget * FRAME_SHARE);
    const started = performance.now();
    const source: FrameSource = await openVideo(req.path, { cacheBytes: frameBytes });
    let session: VideoSession;
    try {
      session = await worker.model.openVideo(source, { featureCacheBytes: budget - frameBytes });
    } catch (err) {
      await closeSource(source);
      throw err;
    }
    if (this.closed) {
      await session.dispose().catch(() => undefined);
      throw shuttingDown();
    }
    const managed = new ManagedSession(id, worker, session, { videoPath: req.videoPath ?? null, videoId: req.videoId ?? null }, this.now());
    this.sessions.set(id, managed);
    this.options.metrics.opened.inc();
    const i = session.info;
    log.info({ session_id: id, device: worker.label, frames: i.totalFrames, width: i.width, height: i.height, ms: Math.round(performance.now() - started) }, 'video session opened');
    return managed;
  }

  /** Adds a prompt; 409 during a propagation, 404 once closed. */
  prompt(s: ManagedSession, prompt: VideoPrompt): Promise<PromptResult> {
    // A prompt naming a removed object is refused by the library (ERR_SAM3_UNKNOWN_OBJECT, 404).
    return this.operation(s, () => s.session.addPrompt(prompt));
  }

  removeObject(s: ManagedSession, objId: number): Promise<number[]> {
    return this.operation(s, async () => {
      await s.session.removeObject(objId);
      return s.session.status().objects;
    });
  }

  /** Stops tracking a text concept; the ids of the objects removed with it. */
  removeConcept(s: ManagedSession, conceptId: number): Promise<number[]> {
    return this.operation(s, () => s.session.removeConcept(conceptId));
  }

  reset(s: ManagedSession): Promise<void> {
    return this.operation(s, () => s.session.reset());
  }

  private async operation<T>(s: ManagedSession, fn: () => Promise<T>): Promise<T> {
    if (s.closing) throw sessionNotFound(s.id);
    this.touch(s);
    try {
      return await fn();
    } finally {
      this.touch(s);
    }
  }

  /**
   * Runs one propagation, calling onFrame once per frame as the tracker produces it (awaited, so a
   * slow consumer slows the tracker rather than buffering frames). The checks and the claim on the
   * session happen synchronously, before the first await, so two concurrent calls cannot both run.
   * signal aborting stops the run early (summary.cancelled); a close of the session while it runs
   * rejects with 409 session_closed.
   */
  async propagate(s: ManagedSession, options: Omit<PropagateOptions, 'signal'>, signal: AbortSignal | undefined, onFrame: (frame: FrameResult) => void | Promise<void>): Promise<PropagationSummary> {
    if (s.closing) throw sessionNotFound(s.id);
    const controller = new AbortController();
    // Claims the session now, before any await (a second call is refused by the library).
    const run = s.session.propagate({ ...options, signal: controller.signal });
    let finish!: () => void;
    s.propagation = { controller, done: new Promise<void>((resolve) => (finish = resolve)) };
    const onAbort = () => controller.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });

    const device = s.device;
    const started = performance.now();
    let frames = 0;
    let outcome: PropagationOutcome = 'failed';
    try {
      let last = performance.now();
      // 'both' tracks the start frame in each direction; callers get each frame once (the first).
      const seen = new Set<number>();
      if (controller.signal.aborted) await run.return(undefined);
      else {
        for await (const frame of run) {
          const t = performance.now();
          this.options.metrics.onFrame(device, (t - last) / 1000);
          if (seen.has(frame.frameIndex)) {
            last = performance.now();
            continue;
          }
          seen.add(frame.frameIndex);
          frames++;
          s.lastUsed = this.now();
          await onFrame(frame);
          last = performance.now();
          if (controller.signal.aborted) break;
        }
      }
      outcome = controller.signal.aborted ? 'cancelled' : 'completed';
    } catch (err) {
      if (!controller.signal.aborted) throw err;
      outcome = 'cancelled'; // the library may end an aborted run by throwing
    } finally {
      signal?.removeEventListener('abort', onAbort);
      s.propagation = undefined;
      s.lastUsed = this.now();
      const seconds = (performance.now() - started) / 1000;
      this.options.metrics.onPropagation(device, outcome, frames, seconds);
      finish();
    }
    if (s.closing) throw sessionClosed(s.id);
    return { frames, ms: Math.round((performance.now() - started) * 10) / 10, cancelled: outcome === 'cancelled' };
  }

  /**
   * Closes a session: out of the table at once (later calls get 404), its propagation cancelled,
   * queued operations finished, then its native memory freed.
   */
  async close(id: string, reason: CloseReason, log: Logger = this.options.logger): Promise<void> {
    const s = this.sessions.get(id);
    if (!s) throw sessionNotFound(id);
    this.sessions.delete(id);
    s.closing = true;
    const closing = (async () => {
      if (s.propagation) {
        s.propagation.controller.abort(sessionClosed(id));
        await s.propagation.done;
      }
      try {
        await s.session.dispose(); // queued operations finish first
      } catch (err) {
        log.error({ err, session_id: id }, 'disposing a video session failed');
      }
      this.options.metrics.closed.inc({ reason });
      log.info({ session_id: id, reason }, 'video session closed');
    })();
    this.closes.add(closing);
    try {
      await closing;
    } finally {
      this.closes.delete(closing);
    }
  }

  /** Closes the sessions unused for longer than SESSION_IDLE_TIMEOUT_SECONDS. */
  sweep(): void {
    const now = this.now();
    for (const s of this.sessions.values()) {
      if (s.session.busy || s.closing) continue;
      if (now - s.lastUsed >= this.options.config.idleTimeoutMs) {
        void this.close(s.id, 'expired').catch(() => undefined);
      }
    }
  }

  /** Shutdown: refuses new sessions and frees every open one (cancelling propagations). */
  async closeAll(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await Promise.allSettled([...this.pendingOpens]);
    await Promise.allSettled([...this.sessions.keys()].map((id) => this.close(id, 'shutdown')));
    await Promise.allSettled([...this.closes]);
  }

  private allowedWorkers(pool: ModelPool, gpuIds: number[] | undefined): Worker[] {
    if (!gpuIds) return pool.workers;
    const n = pool.workers.length;
    const bad = gpuIds.findIndex((g) => g >= n);
    if (bad >= 0) {
      const list = pool.workers.map((w) => `${w.index}: ${w.device}`).join(', ');
      throw new Sam3Error(ErrorCode.InvalidArgument, `gpu_ids[${bad}]: device index ${gpuIds[bad]} is out of range; this server has ${n} device${n > 1 ? 's' : ''} (DEVICES, by index: ${list})`, {
        gpu_ids: gpuIds,
        devices: pool.workers.map((w) => w.device),
      });
    }
    return [...new Set(gpuIds)].map((g) => pool.workers[g]!);
  }

  private leastLoaded(workers: Worker[]): Worker {
    const load = new Map<Worker, number>();
    for (const s of this.sessions.values()) load.set(s.worker, (load.get(s.worker) ?? 0) + 1);
    for (const w of this.opening.values()) load.set(w, (load.get(w) ?? 0) + 1);
    return [...workers].sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || a.index - b.index)[0]!;
  }

  /** Seconds until the first idle session expires (at least 1). */
  private retryAfterSeconds(): number {
    const now = this.now();
    let soonest = Infinity;
    for (const s of this.sessions.values()) {
      const at = this.expiresAt(s);
      if (at !== undefined) soonest = Math.min(soonest, at - now);
    }
    return Number.isFinite(soonest) ? Math.max(1, Math.ceil(soonest / 1000)) : Math.max(1, Math.ceil(this.options.config.idleTimeoutMs / 1000));
  }

  private perDevice(): Map<string, { sessions: number; memoryBytes: number }> {
    const out = new Map<string, { sessions: number; memoryBytes: number }>();
    for (const s of this.sessions.values()) {
      const entry = out.get(s.device) ?? { sessions: 0, memoryBytes: 0 };
      entry.sessions++;
      try {
        entry.memoryBytes += s.status().memoryBytes;
      } catch {
        // being disposed
      }
      out.set(s.device, entry);
    }
    return out;
  }
}

async function closeSource(source: FrameSource): Promise<void> {
  try {
    await source.close();
  } catch {
    // the open failure is what the caller reports
  }
}

export function sessionNotFound(id: string): Sam3Error {
  return new Sam3Error(ErrorCode.SessionNotFound, `no video session '${id}': it was never opened, was closed, expired after SESSION_IDLE_TIMEOUT_SECONDS unused, or was lost when the server restarted; GET /api/v1/video/sessions lists the open ones`, { session_id: id });
}

function sessionClosed(id: string): Sam3Error {
  return new Sam3Error(ErrorCode.SessionClosed, `session '${id}' was closed while propagating`, { session_id: id });
}
