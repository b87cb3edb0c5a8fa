/**
 * Errors of the library. Every error has a stable `code`; native errors arrive with the same codes
 * (see native/core/errors.h) and are re-thrown as Sam3Error with the caller's stack, so a failure points
 * at user code rather than at the engine thread.
 */
export const ErrorCode = {
  InvalidArgument: 'ERR_SAM3_INVALID_ARGUMENT',
  InvalidImage: 'ERR_SAM3_INVALID_IMAGE',
  ImageTooLarge: 'ERR_SAM3_IMAGE_TOO_LARGE',
  /** An image format refused before decoding: vector and document formats (SVG, PDF) whose rendering cost is unbounded. */
  UnsupportedImageFormat: 'ERR_SAM3_UNSUPPORTED_IMAGE_FORMAT',
  Disposed: 'ERR_SAM3_DISPOSED',
  Bundle: 'ERR_SAM3_BUNDLE',
  ModelLoad: 'ERR_SAM3_MODEL_LOAD',
  OutOfMemory: 'ERR_SAM3_OUT_OF_MEMORY',
  Inference: 'ERR_SAM3_INFERENCE',
  EngineClosed: 'ERR_SAM3_ENGINE_CLOSED',
  DeviceMismatch: 'ERR_SAM3_DEVICE_MISMATCH',
  Addon: 'ERR_SAM3_ADDON',
  /** Not a decodable video (corrupt, no video stream, unsupported upload extension). */
  BadVideo: 'ERR_SAM3_BAD_VIDEO',
  /** ffmpeg failed or stopped short while decoding frames of a video that probed fine. */
  VideoDecode: 'ERR_SAM3_VIDEO_DECODE',
  /** A frame index outside [0, totalFrames). */
  FrameRange: 'ERR_SAM3_FRAME_RANGE',
  /** A media path outside MEDIA_ROOT ('..', an absolute path elsewhere, a symlink pointing out). */
  ForbiddenPath: 'ERR_SAM3_FORBIDDEN_PATH',
  /** A media path or uploaded video id that does not exist. */
  MediaNotFound: 'ERR_SAM3_MEDIA_NOT_FOUND',
  /** The model bundle has no video tracker (exported from an image-only sam3 checkpoint). */
  NoVideoModel: 'ERR_SAM3_NO_VIDEO_MODEL',
  /** The model bundle has no interactive decoder for clicks and boxes on images (no tracker, or an older bundle). */
  NoInteractiveModel: 'ERR_SAM3_NO_INTERACTIVE_MODEL',
  /** A video session is already propagating; one propagation at a time per session. */
  SessionBusy: 'ERR_SAM3_SESSION_BUSY',
  /** An object id the session does not track (never prompted, or removed). */
  UnknownObject: 'ERR_SAM3_UNKNOWN_OBJECT',
  /** The ffmpeg / ffprobe binary is missing or cannot run (a server-side problem). */
  Ffmpeg: 'ERR_SAM3_FFMPEG',
  /** Propagation asked of a video session that tracks no object yet. */
  NoObjects: 'ERR_SAM3_NO_OBJECTS',
  /** A concept id the video session does not track (never added, or removed). */
  UnknownConcept: 'ERR_SAM3_UNKNOWN_CONCEPT',

  // Codes of the serving layer (src/server): thrown by its services, mapped to HTTP at its edge.
  /** Every device's queue of image jobs is full (load shedding; retry later). */
  QueueFull: 'ERR_SAM3_QUEUE_FULL',
  /** An image id that is not (or no longer) in the feature cache. */
  UnknownImageId: 'ERR_SAM3_UNKNOWN_IMAGE_ID',
  /** An image id or embedding asked of a server that runs without a feature cache. */
  FeatureCacheDisabled: 'ERR_SAM3_FEATURE_CACHE_DISABLED',
  /** A mask_input handle that is not (or no longer) held by the server. */
  UnknownMaskInput: 'ERR_SAM3_UNKNOWN_MASK_INPUT',
  /** A video session id that is not open. */
  SessionNotFound: 'ERR_SAM3_SESSION_NOT_FOUND',
  /** A video session id that is already taken. */
  SessionExists: 'ERR_SAM3_SESSION_EXISTS',
  /** The session was closed while the operation ran. */
  SessionClosed: 'ERR_SAM3_SESSION_CLOSED',
  /** MAX_SESSIONS sessions are open. */
  TooManySessions: 'ERR_SAM3_TOO_MANY_SESSIONS',
  /** The model is still loading. */
  ModelLoading: 'ERR_SAM3_MODEL_LOADING',
  /** The model failed to load; nothing can be served. */
  ModelUnavailable: 'ERR_SAM3_MODEL_UNAVAILABLE',
  /** The service is shutting down. */
  ShuttingDown: 'ERR_SAM3_SHUTTING_DOWN',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Codes caused by what the caller passed in (an HTTP layer maps them to 4xx). */
export const USER_ERROR_CODES: ReadonlySet<string> = new Set([
  ErrorCode.InvalidArgument,
  ErrorCode.InvalidImage,
  ErrorCode.ImageTooLarge,
  ErrorCode.UnsupportedImageFormat,
  ErrorCode.Disposed,
  ErrorCode.BadVideo,
  ErrorCode.VideoDecode,
  ErrorCode.FrameRange,
  ErrorCode.ForbiddenPath,
  ErrorCode.MediaNotFound,
  ErrorCode.NoVideoModel,
  ErrorCode.NoInteractiveModel,
  ErrorCode.SessionBusy,
  ErrorCode.UnknownObject,
  ErrorCode.NoObjects,
  ErrorCode.UnknownConcept,
  ErrorCode.UnknownImageId,
  ErrorCode.FeatureCacheDisabled,
  ErrorCode.UnknownMaskInput,
  ErrorCode.SessionNotFound,
  ErrorCode.SessionExists,
  ErrorCode.SessionClosed,
  ErrorCode.TooManySessions,
]);

export interface Sam3ErrorOptions {
  cause?: unknown;
  /** When retrying makes sense (load shedding, loading, session limits): seconds to wait. */
  retryAfterSeconds?: number;
}

export class Sam3Error extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: Sam3ErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'Sam3Error';
    this.code = code;
    this.details = details;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  get isUserError(): boolean {
    return USER_ERROR_CODES.has(this.code);
  }
}

const KNOWN = new Set<string>(Object.values(ErrorCode));

/** Converts anything thrown by the addon into a Sam3Error (keeping its code and message). */
export function fromNative(err: unknown, callerStack?: string): Sam3Error {
  if (err instanceof Sam3Error) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' && KNOWN.has(e.code) ? (e.code as ErrorCode) : ErrorCode.Inference;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const out = new Sam3Error(code, message, undefined, { cause: err });
  if (callerStack) out.stack = `${out.name} [${code}]: ${message}\n${callerStack}`;
  return out;
}

/** Captures the caller's stack now, before an async hop into native code. */
export function captureCaller(): string {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, captureCaller);
  return (holder.stack ?? '').split('\n').slice(1).join('\n');
}

/** Runs a native call (sync throw or async rejection) and converts its failure. */
export async function callNative<T>(fn: () => Promise<T>): Promise<T> {
  const stack = captureCaller();
  try {
    return await fn();
  } catch (err) {
    throw fromNative(err, stack);
  }
}

export function invalid(message: string, details?: Record<string, unknown>): Sam3Error {
  return new Sam3Error(ErrorCode.InvalidArgument, message, details);
}
