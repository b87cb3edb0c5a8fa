/**
 * Uploaded videos (MEDIA_ROOT/uploads/<video_id><ext>, media.ts): listing, deletion and retention.
 * An upload that no session has used for UPLOAD_TTL_SECONDS is deleted by a periodic sweep (an
 * unref'd timer, so it never keeps the process alive); one a session is open on, or is being opened
 * on, is never deleted, by the sweep or by DELETE (409 video_in_use).
 *
 * Times live in the file system, so they survive a restart: the file's mtime is when it was
 * uploaded (nothing rewrites it), its atime when a session last used it (set when a session opens
 * on it and at every sweep that finds one open on it; reads may move it too). An upload expires
 * UPLOAD_TTL_SECONDS after the later of the two. UPLOAD_TTL_SECONDS=0 keeps uploads until deleted.
 *
 * Ids are this replica's (core/replica.ts): listed and answered with the replica prefix, and the
 * routes refuse another replica's id with 421 before any lookup.
 */
import { readdir, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';

import type { Logger } from 'pino';

import { ApiCode, ApiError } from '../core/errors.js';
import type { ReplicaIds } from '../core/replica.js';
import { UPLOADS_DIR, UPLOAD_EXTENSIONS, resolveVideoId } from './media.js';

const STORED = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(\.[a-z0-9]+)$/;

/** Longest pause between sweeps; a short TTL sweeps more often (a quarter of it, at least every 250 ms). */
const MAX_SWEEP_MS = 5 * 60_000;

export interface UploadFacts {
  /** The local id (a lower-case UUID, without the replica prefix). */
  localId: string;
  file: string;
  bytes: number;
  createdAt: number;
  lastUsedAt: number;
  /** Ids of the sessions open on it now. */
  sessions: string[];
  /** Being opened by a session start right now. */
  pinned: boolean;
}

export interface UploadStoreOptions {
  mediaRoot: string;
  /** UPLOAD_TTL_SECONDS in ms; 0: never expire. */
  ttlMs: number;
  ids: ReplicaIds;
  /** Open sessions, by the local id of the upload each was opened on. */
  sessionsByUpload(): Map<string, string[]>;
  logger: Logger;
}

export class UploadStore {
  private readonly pins = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;

  constructor(private readonly options: UploadStoreOptions) {}

  get dir(): string {
    return path.join(path.resolve(this.options.mediaRoot), UPLOADS_DIR);
  }

  get ttlMs(): number {
    return this.options.ttlMs;
  }

  /** Starts the periodic sweep (none when uploads never expire). */
  start(): void {
    if (this.options.ttlMs <= 0 || this.timer) return;
    const every = Math.min(MAX_SWEEP_MS, Math.max(250, this.options.ttlMs / 4));
    this.timer = setInterval(() => void this.sweep(), every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }

  /**
   * Keeps an upload from being deleted while a session is being opened on it and marks it used;
   * call the returned function once the session is open (or failed to open).
   */
  async pin(localId: string): Promise<() => void> {
    this.pins.set(localId, (this.pins.get(localId) ?? 0) + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const n = (this.pins.get(localId) ?? 1) - 1;
      if (n > 0) this.pins.set(localId, n);
      else this.pins.delete(localId);
    };
    try {
      await this.markUsed(await resolveVideoId(this.options.mediaRoot, localId));
    } catch (err) {
      release();
      throw err;
    }
    return release;
  }

  /** Every upload of this replica, oldest first. */
  async list(): Promise<UploadFacts[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const inUse = this.options.sessionsByUpload();
    const out: UploadFacts[] = [];
    for (const name of names) {
      const m = STORED.exec(name);
      if (!m || !UPLOAD_EXTENSIONS.includes(m[2]!)) continue;
      const facts = await this.facts(m[1]!, path.join(this.dir, name), inUse).catch(() => undefined);
      if (facts) out.push(facts);
    }
    return out.sort((a, b) => a.createdAt - b.createdAt);
  }

  /** One upload; 400 for an id that is not a video id, 404 for an unknown one. */
  async get(localId: string): Promise<UploadFacts> {
    const file = await resolveVideoId(this.options.mediaRoot, localId);
    return this.facts(path.basename(file).replace(/\.[^.]+$/, ''), file, this.options.sessionsByUpload());
  }

  /** Deletes an upload; 409 video_in_use while a session is open (or opening) on it. */
  async delete(localId: string): Promise<UploadFacts> {
    const facts = await this.get(localId);
    if (facts.sessions.length > 0 || facts.pinned) throw inUse(this.options.ids.mint(facts.localId), facts.sessions);
    await rm(facts.file, { force: true });
    return facts;
  }

  /** When an upload expires (ms epoch); undefined when it never does or is in use. */
  expiresAt(f: UploadFacts): number | undefined {
    if (this.options.ttlMs <= 0 || f.sessions.length > 0 || f.pinned) return undefined;
    return Math.max(f.createdAt, f.lastUsedAt) + this.options.ttlMs;
  }

  /** Deletes the uploads past their TTL that no session uses; marks the used ones used now. */
  sweep(): Promise<void> {
    return (this.sweeping ??= this.sweepOnce().finally(() => (this.sweeping = undefined)));
  }

  private async sweepOnce(): Promise<void> {
    try {
      const now = Date.now();
      for (const f of await this.list()) {
        if (f.sessions.length > 0 || f.pinned) {
          await this.markUsed(f.file).catch(() => undefined);
          continue;
        }
        const expires = this.expiresAt(f);
        if (expires === undefined || expires > now) continue;
        // Checked again just before deleting: a session may have started on it meanwhile.
        if (this.pins.has(f.localId) || this.options.sessionsByUpload().has(f.localId)) continue;
        await rm(f.file, { force: true });
        this.options.logger.info({ video_id: this.options.ids.mint(f.localId), bytes: f.bytes, unused_seconds: Math.round((now - Math.max(f.createdAt, f.lastUsedAt)) / 1000) }, 'upload expired (UPLOAD_TTL_SECONDS) and was deleted');
      }
    } catch (err) {
      this.options.logger.warn({ err }, 'the upload sweep failed; it runs again later');
    }
  }

  private async markUsed(file: string): Promise<void> {
    const st = await stat(file);
    // atime: last used; mtime stays the upload time.
    await utimes(file, new Date(), st.mtime);
  }

  private async facts(localId: string, file: string, inUse: Map<string, string[]>): Promise<UploadFacts> {
    const st = await stat(file);
    return {
      localId,
      file,
      bytes: st.size,
      createdAt: st.mtimeMs,
      lastUsedAt: Math.max(st.atimeMs, st.mtimeMs),
      sessions: inUse.get(localId) ?? [],
      pinned: this.pins.has(localId),
    };
  }
}

function inUse(videoId: string, sessions: string[]): ApiError {
  const which = sessions.length > 0 ? `session${sessions.length > 1 ? 's' : ''} ${sessions.map((s) => `'${s}'`).join(', ')} ${sessions.length > 1 ? 'are' : 'is'} open on it` : 'a session is being opened on it';
  return new ApiError(409, ApiCode.VideoInUse, `video ${videoId} cannot be deleted: ${which}; close ${sessions.length > 1 ? 'them' : 'it'} first (DELETE /api/v1/video/session/{session_id})`, { video_id: videoId, sessions });
}
