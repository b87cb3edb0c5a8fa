/**
 * Video endpoints under /api/v1/video: upload, session start / prompt / propagate / status /
 * reset / close, object removal and the session list. Bodies are validated by the zod schemas of
 * video/schemas.ts; the session lifecycle lives in SessionManager; the WebSocket propagation is in
 * video/socket.ts (this router answers a plain GET on its path with 426).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import Router from '@koa/router';
import multer from '@koa/multer';

import { checkFrameIndex, ErrorCode, type FrameResult, type Label, MAX_POINTS_PER_PROMPT, type MaskFormat, formatMasks, openVideo, type PromptResult, Sam3Error, type SessionStatus, type VideoInfo, type VideoPrompt } from '../../index.js';
import { resolveMediaPath, resolveVideoId, storeUpload } from './media.js';
import type { AppContext, AppDeps, AppRouter, AppState } from '../core/context.js';
import { SMALL_BODY_BYTES } from '../core/body.js';
import { ApiCode, ApiError, validationError } from '../core/errors.js';
import { parseOrThrow } from '../core/validate.js';
import { isPositive } from '../core/schemas.js';
import type { PromptRequest, VideoSchemas } from './schemas.js';
import { type ManagedSession, type SessionManager } from './sessions.js';
import type { UploadStore } from './uploads.js';

export function videoInfo(info: VideoInfo) {
  return {
    total_frames: info.totalFrames,
    fps: info.fps,
    resolution: { width: info.width, height: info.height },
    duration_seconds: info.durationSeconds,
  };
}

/** One frame's objects, their masks in `format`. */
export async function frameBody(frame: FrameResult, format: MaskFormat) {
  const masks = await formatMasks(
    frame.objects.map((o) => o.mask),
    format,
  );
  return { frame_index: frame.frameIndex, objects: frame.objects.map((o, i) => ({ id: o.id, mask: masks[i]!, box: o.box, score: o.score, concept: o.concept })) };
}

function conceptsBody(concepts: SessionStatus['concepts']) {
  return concepts.map((c) => ({ concept_id: c.id, text: c.text, objects: c.objects }));
}

const iso = (ms: number) => new Date(ms).toISOString();
const elapsed = (start: number) => Math.round((performance.now() - start) * 10) / 10;

/**
 * The request's list of prompts as the library's one prompt. The rules of what combines with what
 * (text vs box/points, obj_id) are the library's (VideoSession.addPrompt); here only what the list
 * form adds: one text, one box, no negative box.
 */
export function toVideoPrompt(req: PromptRequest, defaultThreshold: number): VideoPrompt {
  const texts = req.prompts.filter((p) => p.type === 'text');
  const boxes = req.prompts.filter((p) => p.type === 'box');
  const points = req.prompts.filter((p) => p.type === 'point');
  if (texts.length > 1) throw validationError(`prompts: ${texts.length} text prompts; send one text prompt per request`);
  if (boxes.length > 1) throw validationError(`prompts: ${boxes.length} box prompts; one object prompt takes at most one box (and any number of points)`);
  if (boxes[0] && !isPositive(boxes[0].label)) throw validationError('prompts: a negative box (label false) is not supported on video; mark what to exclude with point prompts of label 0');
  if (points.length > MAX_POINTS_PER_PROMPT) throw validationError(`prompts: ${points.length} point prompts; the limit is ${MAX_POINTS_PER_PROMPT} per object prompt`);
  const prompt: VideoPrompt = { frameIndex: req.frame_index };
  if (req.obj_id !== undefined && req.obj_id !== null) prompt.objId = req.obj_id;
  if (texts[0]) {
    prompt.text = texts[0].text;
    prompt.threshold = req.threshold ?? defaultThreshold;
  } else if (req.threshold !== undefined) prompt.threshold = req.threshold;
  if (boxes[0]) prompt.box = boxes[0].box;
  if (points.length > 0) prompt.points = points.map((p) => ({ point: p.point, label: p.label as Label }));
  return prompt;
}

async function promptBody(r: PromptResult, concept: string | null, format: MaskFormat) {
  return { frame_index: r.frameIndex, obj_id: r.objId, obj_ids: r.objIds, masks: await formatMasks(r.masks, format), boxes: r.boxes, scores: r.scores, concept };
}

export function statusBody(manager: SessionManager, s: ManagedSession) {
  const st = s.status();
  const expires = manager.expiresAt(s);
  return {
    session_id: s.id,
    status: s.propagating ? ('propagating' as const) : ('ready' as const),
    video_info: videoInfo(s.info),
    device: s.device,
    total_frames: st.totalFrames,
    frames_tracked: st.framesTracked,
    objects: st.objects,
    num_objects: st.objects.length,
    concepts: conceptsBody(st.concepts),
    prompts: st.prompts,
    memory_bytes: st.memoryBytes,
    propagating: s.propagating,
    created_at: iso(s.createdAt),
    last_activity: iso(s.lastUsed),
    expires_at: expires === undefined ? null : iso(expires),
  };
}

export function videoRoutes(deps: AppDeps, schemas: VideoSchemas, manager: SessionManager, uploads: UploadStore): AppRouter {
  const { config, body } = deps;
  const { video } = config;
  const router: AppRouter = new Router<AppState, AppContext>({ prefix: '/api/v1/video' });
  const uploadDir = path.join(os.tmpdir(), 'sam3-uploads');
  // The temporary file each request is writing, so a stalled upload's can be removed (core/body.ts).
  const partials = new WeakMap<object, string>();
  const upload = multer({
    storage: multer.diskStorage({
      destination: uploadDir,
      filename: (req, _file, cb) => {
        const name = randomBytes(16).toString('hex');
        partials.set(req, path.join(uploadDir, name));
        cb(null, name);
      },
    }),
    limits: { fileSize: video.maxUploadBytes, files: 1, fields: 4, parts: 5 },
  }).single('file');
  const uploadMb = +(video.maxUploadBytes / 1024 / 1024).toFixed(2);

  // Another replica's session id is a 421 naming the owner (core/replica.ts).
  const sessionIdOf = (ctx: AppContext) => deps.replica.own(String(ctx.params.session_id), 'session_id');
  const sessionOf = (ctx: AppContext) => manager.get(sessionIdOf(ctx));
  // MEDIA_ROOT is made on first use (uploads are stored under it).
  let mediaRoot: Promise<unknown> | undefined;
  const ensureMediaRoot = () =>
    (mediaRoot ??= mkdir(video.mediaRoot, { recursive: true }).catch((err: unknown) => {
      mediaRoot = undefined;
      throw err;
    }));

  router.post('/upload', async (ctx) => {
    if (!ctx.is('multipart/form-data')) {
      const got = ctx.get('content-type') || 'none';
      throw new ApiError(415, ApiCode.UnsupportedMediaType, `Content-Type ${got} is not accepted here; send multipart/form-data with the video in a part named 'file'`, { content_type: got });
    }
    const declared = Number(ctx.get('content-length'));
    if (Number.isFinite(declared) && declared > video.maxUploadBytes + 64 * 1024) throw uploadTooLarge(uploadMb, video.maxUploadBytes);
    deps.pool(); // 503 while loading, before taking the upload
    try {
      await body.multipart(ctx, upload, async () => {
        const partial = partials.get(ctx.req);
        if (partial) await rm(partial, { force: true });
      });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'LIMIT_FILE_SIZE') throw uploadTooLarge(uploadMb, video.maxUploadBytes);
      if (typeof code === 'string' && code.startsWith('LIMIT_')) {
        throw validationError(`multipart form rejected: ${(err as Error).message}; send one part named 'file' holding the video`, { field: (err as { field?: unknown }).field ?? null });
      }
      throw err;
    }
    const file = ctx.file;
    if (!file?.path) throw validationError("no video in the form: send the video file in a multipart part named 'file'");
    let stored: { videoId: string; path: string } | undefined;
    try {
      await ensureMediaRoot();
      stored = await storeUpload(video.mediaRoot, file.path, file.originalname);
      const source = await openVideo(stored.path, { cacheBytes: 0 });
      const info = source.info;
      await source.close();
      ctx.state.log.info({ video_id: stored.videoId, bytes: file.size, frames: info.totalFrames }, 'video uploaded');
      ctx.body = { video_id: deps.replica.mint(stored.videoId), video_info: videoInfo(info) };
    } catch (err) {
      if (stored) await rm(stored.path, { force: true }).catch(() => undefined);
      throw err;
    } finally {
      await rm(file.path, { force: true }).catch(() => undefined);
    }
  });

  router.post('/session/start', async (ctx) => {
    const { fields } = await body.read(ctx, false, { maxBytes: SMALL_BODY_BYTES });
    const req = parseOrThrow(schemas.StartSessionRequest, fields);
    deps.pool(); // 503 while loading
    await ensureMediaRoot();
    const upload = req.video_id !== undefined ? deps.replica.local(req.video_id, 'video_id').toLowerCase() : undefined;
    // An upload being opened is kept from the retention sweep and DELETE (video/uploads.ts).
    const unpin = upload !== undefined ? await uploads.pin(upload) : undefined;
    try {
      const file = upload !== undefined ? await resolveVideoId(video.mediaRoot, upload) : await resolveMediaPath(video.mediaRoot, req.video_path!);
      const s = await manager.open(
        {
          path: file,
          ...(upload !== undefined ? { videoId: deps.replica.mint(upload) } : { videoPath: req.video_path! }),
          ...(req.session_id !== undefined ? { sessionId: req.session_id } : {}),
          ...(req.gpu_ids !== undefined ? { gpuIds: req.gpu_ids } : {}),
        },
        ctx.state.log,
      );
      ctx.body = { session_id: s.id, video_info: videoInfo(s.info), status: 'ready', device: s.device };
    } finally {
      unpin?.();
    }
  });

  router.post('/session/:session_id/prompt', async (ctx) => {
    const s = sessionOf(ctx);
    const { fields } = await body.read(ctx, false, { maxBytes: SMALL_BODY_BYTES });
    const req = parseOrThrow(schemas.PromptRequest, fields);
    checkFrameIndex(req.frame_index, s.info.totalFrames, 'frame_index');
    const prompt = toVideoPrompt(req, config.confidenceThreshold);
    ctx.body = await promptBody(await manager.prompt(s, prompt), prompt.text ?? null, req.mask_format);
  });

  router.post('/session/:session_id/propagate', async (ctx) => {
    const s = sessionOf(ctx);
    const { fields } = await body.read(ctx, false, { maxBytes: SMALL_BODY_BYTES });
    const req = parseOrThrow(schemas.PropagateRequest, fields);
    if (req.stream) {
      throw validationError(`stream: this endpoint answers once with every frame; for frames as they are tracked, open the WebSocket /api/v1/video/ws/propagate/${s.id} and send the same options`);
    }
    if (req.start_frame_index !== undefined) checkFrameIndex(req.start_frame_index, s.info.totalFrames, 'start_frame_index');
    requireObjects(s);
    // A client that goes away stops the tracker (the response would have nowhere to go).
    const gone = new AbortController();
    const onClose = () => {
      if (!ctx.res.writableFinished) gone.abort(new Error('client disconnected'));
    };
    ctx.res.once('close', onClose);
    const results: Record<string, Awaited<ReturnType<typeof frameBody>>> = {};
    const start = performance.now();
    try {
      const summary = await manager.propagate(s, propagateOptions(req), gone.signal, async (frame) => {
        results[String(frame.frameIndex)] = await frameBody(frame, req.mask_format);
      });
      if (summary.cancelled) ctx.state.log.info({ session_id: s.id, frames: summary.frames }, 'propagation cancelled: the client went away');
    } finally {
      ctx.res.off('close', onClose);
    }
    // total_frames is the video's length everywhere (video_info, status, the WebSocket); frames_processed this run's frames.
    ctx.body = { session_id: s.id, results, total_frames: s.info.totalFrames, frames_processed: Object.keys(results).length, processing_time_ms: elapsed(start) };
  });

  router.get('/session/:session_id/status', (ctx) => {
    ctx.body = statusBody(manager, sessionOf(ctx));
  });

  router.delete('/session/:session_id/object/:obj_id', async (ctx) => {
    const s = sessionOf(ctx);
    const raw = String(ctx.params.obj_id);
    const objId = /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(objId)) throw validationError(`obj_id '${raw}' in the path must be an integer object id`, { obj_id: raw });
    const objects = await manager.removeObject(s, objId);
    ctx.body = { session_id: s.id, obj_id: objId, objects };
  });

  router.delete('/session/:session_id/concept/:concept_id', async (ctx) => {
    const s = sessionOf(ctx);
    const raw = String(ctx.params.concept_id);
    const conceptId = /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(conceptId)) throw validationError(`concept_id '${raw}' in the path must be an integer concept id (see the session's status)`, { concept_id: raw });
    const removed = await manager.removeConcept(s, conceptId);
    ctx.body = { session_id: s.id, concept_id: conceptId, removed_objects: removed, objects: s.status().objects };
  });

  router.post('/session/:session_id/reset', async (ctx) => {
    const s = sessionOf(ctx);
    await manager.reset(s);
    ctx.body = { session_id: s.id, status: 'ready', objects: s.status().objects };
  });

  router.delete('/session/:session_id', async (ctx) => {
    const id = sessionIdOf(ctx);
    await manager.close(id, 'deleted', ctx.state.log);
    ctx.body = { session_id: id, status: 'closed' };
  });

  router.get('/sessions', (ctx) => {
    const sessions = manager.list().map((s) => {
      let objects: number[] = [];
      let concepts: SessionStatus['concepts'] = [];
      try {
        ({ objects, concepts } = s.status());
      } catch {
        // closing
      }
      return {
        session_id: s.id,
        video_info: videoInfo(s.info),
        video_path: s.source.videoPath,
        video_id: s.source.videoId,
        device: s.device,
        objects,
        concepts: conceptsBody(concepts),
        propagating: s.propagating,
        created_at: iso(s.createdAt),
        last_activity: iso(s.lastUsed),
      };
    });
    ctx.body = { sessions, count: sessions.length, max_sessions: manager.maxSessions };
  });

  router.get('/ws/propagate/:session_id', (ctx) => {
    throw new ApiError(
      426,
      ApiCode.UpgradeRequired,
      `this is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket) and send the propagation options as JSON; for one JSON answer use POST /api/v1/video/session/${ctx.params.session_id}/propagate`,
      {},
      { Upgrade: 'websocket' },
    );
  });

  return router;
}

/** Propagation needs something to track: an object, or a text concept (which may find objects on later frames). */
export function requireObjects(s: ManagedSession): void {
  const st = s.status();
  if (st.objects.length === 0 && st.concepts.length === 0) {
    throw new Sam3Error(ErrorCode.NoObjects, `session '${s.id}' tracks no objects yet; add a prompt with POST /api/v1/video/session/${s.id}/prompt before propagating`, { session_id: s.id });
  }
}

export function propagateOptions(req: { direction: 'forward' | 'backward' | 'both'; start_frame_index?: number | undefined; max_frames?: number | null | undefined }) {
  return {
    direction: req.direction,
    ...(req.start_frame_index !== undefined ? { startFrameIndex: req.start_frame_index } : {}),
    ...(req.max_frames !== undefined ? { maxFrames: req.max_frames } : {}),
  };
}

function uploadTooLarge(mb: number, bytes: number): ApiError {
  return new ApiError(413, ApiCode.UploadTooLarge, `the video is larger than MAX_UPLOAD_MB = ${mb} MB; send a shorter or more compressed video or raise the server's limit`, { max_upload_bytes: bytes });
}
