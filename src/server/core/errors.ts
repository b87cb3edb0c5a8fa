/**
 * HTTP errors, decided here and nowhere else. Services (the library, the device pool, the session
 * manager) throw coded Sam3Errors; the table below gives each code its HTTP status and API code.
 * ApiError is for what only the HTTP edge knows (bodies, content types, routes).
 *
 * Every error response has the body {error: {code, message, details, request_id}}: a stable
 * snake_case code, a sentence saying what to change, structured details. Errors a client causes
 * are 4xx; errors we cause are 5xx, logged with the same request id the body carries.
 */
import { ErrorCode, Sam3Error } from '../../index.js';

export const ApiCode = {
  ValidationError: 'validation_error',
  InvalidJson: 'invalid_json',
  /** A body that is not what its headers say (corrupt compression, cut short). */
  InvalidBody: 'invalid_body',
  /** Malformed HTTP that never reached a route (bad chunk sizes, invalid methods). */
  BadRequest: 'bad_request',
  RequestTimeout: 'request_timeout',
  HeadersTooLarge: 'headers_too_large',
  InvalidBase64: 'invalid_base64',
  InvalidImage: 'invalid_image',
  ImageTooLarge: 'image_too_large',
  BodyTooLarge: 'body_too_large',
  UnsupportedMediaType: 'unsupported_media_type',
  UnknownImageId: 'unknown_image_id',
  UnknownMaskInput: 'unknown_mask_input',
  FeatureCacheDisabled: 'feature_cache_disabled',
  NotFound: 'not_found',
  MethodNotAllowed: 'method_not_allowed',
  QueueFull: 'queue_full',
  ModelLoading: 'model_loading',
  ModelUnavailable: 'model_unavailable',
  ShuttingDown: 'shutting_down',
  OutOfMemory: 'out_of_memory',
  InvalidVideo: 'invalid_video',
  VideoDecodeFailed: 'video_decode_failed',
  FrameOutOfRange: 'frame_out_of_range',
  ForbiddenPath: 'forbidden_path',
  MediaNotFound: 'media_not_found',
  SessionNotFound: 'session_not_found',
  SessionExists: 'session_exists',
  SessionBusy: 'session_busy',
  SessionClosed: 'session_closed',
  TooManySessions: 'too_many_sessions',
  VideoUnsupported: 'video_unsupported',
  InteractiveUnsupported: 'interactive_unsupported',
  UnknownObject: 'unknown_object',
  UnknownConcept: 'unknown_concept',
  NoObjects: 'no_objects',
  UploadTooLarge: 'upload_too_large',
  UpgradeRequired: 'upgrade_required',
  Unauthorized: 'unauthorized',
  VideoInUse: 'video_in_use',
  WrongReplica: 'wrong_replica',
  InternalError: 'internal_error',
} as const;
export type ApiCode = (typeof ApiCode)[keyof typeof ApiCode];

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get expose(): boolean {
    return this.status < 500;
  }
}

export function validationError(message: string, details: Record<string, unknown> = {}): ApiError {
  return new ApiError(400, ApiCode.ValidationError, message, details);
}

export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown>; request_id: string };
}

interface ErrorLike {
  status?: unknown;
  statusCode?: unknown;
  type?: unknown;
  code?: unknown;
  message?: unknown;
  field?: unknown;
  expose?: unknown;
}

/**
 * Maps anything thrown while handling a request to an ApiError. `shuttingDown` turns errors caused
 * by native resources being closed under a request into a retryable 503.
 */
export function toApiError(err: unknown, context: { maxBodyBytes: number; shuttingDown: boolean; retryAfterSeconds: number }): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof Sam3Error) return fromSam3Error(err, context);
  const e = (err ?? {}) as ErrorLike;
  const limitMb = +(context.maxBodyBytes / 1024 / 1024).toFixed(2);
  // raw-body errors (core/body.ts maps its own; these are a backstop).
  if (e.type === 'entity.too.large' || e.status === 413) {
    return new ApiError(413, ApiCode.BodyTooLarge, `the request body is larger than MAX_BODY_MB = ${limitMb} MB; send a smaller image or raise the server's limit`, { max_body_bytes: context.maxBodyBytes });
  }
  if (e.type === 'entity.parse.failed' || (e.status === 400 && typeof e.message === 'string' && /JSON/i.test(e.message))) {
    return new ApiError(400, ApiCode.InvalidJson, `the request body is not valid JSON: ${String(e.message)}`);
  }
  if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') {
    return new ApiError(415, ApiCode.UnsupportedMediaType, `unsupported body encoding: ${String(e.message)}; send UTF-8 JSON`);
  }
  if (e.type === 'request.aborted') return new ApiError(400, ApiCode.ValidationError, 'the client aborted the request body');
  // multer errors (MulterError: LIMIT_*, MISSING_FIELD_NAME for a part with name="").
  if (e.code === 'MISSING_FIELD_NAME') {
    return new ApiError(400, ApiCode.ValidationError, "multipart form rejected: a part has no name (name=\"\"); name every part (the file 'image' or 'file', the other fields by their field names)", { field: null });
  }
  if (typeof e.code === 'string' && e.code.startsWith('LIMIT_')) {
    if (e.code === 'LIMIT_FILE_SIZE' || e.code === 'LIMIT_FIELD_VALUE') {
      return new ApiError(413, ApiCode.BodyTooLarge, `a multipart part is larger than MAX_BODY_MB = ${limitMb} MB; send a smaller image`, { max_body_bytes: context.maxBodyBytes, field: e.field ?? null });
    }
    const field = typeof e.field === 'string' ? ` (field '${e.field}')` : '';
    return new ApiError(400, ApiCode.ValidationError, `multipart form rejected${field}: ${String(e.message)}; send one file part named 'image' and the other fields as text`, { field: e.field ?? null });
  }
  if (typeof e.message === 'string' && /^(Malformed part header|Unexpected end of (form|file)|Multipart: Boundary not found|Malformed urlencoded form)/i.test(e.message)) {
    return new ApiError(400, ApiCode.ValidationError, `malformed multipart body: ${e.message}`);
  }
  // http-errors raised by koa / @koa/router (405, 501, ...).
  const status = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status === 405) return new ApiError(405, ApiCode.MethodNotAllowed, String(e.message ?? 'method not allowed'));
  if (status >= 400 && status < 500 && e.expose === true) return new ApiError(status, ApiCode.ValidationError, String(e.message));
  return new ApiError(500, ApiCode.InternalError, 'internal server error; the server log has the details under this request id');
}

interface Mapping {
  status: number;
  code: ApiCode;
  /** Send Retry-After (the error's own seconds, else RETRY_AFTER_SECONDS). */
  retry?: true;
  /** The message the client sees, when it is not the error's own. */
  message?: (err: Sam3Error) => string;
}

const INTERNAL: Mapping = { status: 500, code: ApiCode.InternalError, message: () => 'internal server error; the server log has the details under this request id' };

/** Every library and service error code, with its HTTP status: 4xx exactly for USER_ERROR_CODES. */
export const ERROR_STATUS: Readonly<Record<ErrorCode, Mapping>> = {
  [ErrorCode.InvalidArgument]: { status: 400, code: ApiCode.ValidationError },
  [ErrorCode.InvalidImage]: { status: 400, code: ApiCode.InvalidImage, message: (e) => `${e.message}; send a PNG, JPEG, WebP, GIF, TIFF or AVIF image` },
  [ErrorCode.ImageTooLarge]: { status: 413, code: ApiCode.ImageTooLarge },
  [ErrorCode.UnsupportedImageFormat]: { status: 415, code: ApiCode.UnsupportedMediaType },
  [ErrorCode.BadVideo]: { status: 400, code: ApiCode.InvalidVideo },
  [ErrorCode.VideoDecode]: { status: 422, code: ApiCode.VideoDecodeFailed },
  [ErrorCode.FrameRange]: { status: 400, code: ApiCode.FrameOutOfRange },
  [ErrorCode.ForbiddenPath]: { status: 403, code: ApiCode.ForbiddenPath },
  [ErrorCode.MediaNotFound]: { status: 404, code: ApiCode.MediaNotFound },
  [ErrorCode.NoVideoModel]: { status: 501, code: ApiCode.VideoUnsupported },
  [ErrorCode.NoInteractiveModel]: { status: 501, code: ApiCode.InteractiveUnsupported },
  [ErrorCode.SessionBusy]: { status: 409, code: ApiCode.SessionBusy },
  [ErrorCode.UnknownObject]: { status: 404, code: ApiCode.UnknownObject },
  [ErrorCode.NoObjects]: { status: 409, code: ApiCode.NoObjects },
  [ErrorCode.UnknownConcept]: { status: 404, code: ApiCode.UnknownConcept },
  [ErrorCode.UnknownImageId]: { status: 404, code: ApiCode.UnknownImageId },
  [ErrorCode.UnknownMaskInput]: { status: 404, code: ApiCode.UnknownMaskInput },
  [ErrorCode.FeatureCacheDisabled]: { status: 409, code: ApiCode.FeatureCacheDisabled },
  [ErrorCode.SessionNotFound]: { status: 404, code: ApiCode.SessionNotFound },
  [ErrorCode.SessionExists]: { status: 409, code: ApiCode.SessionExists },
  [ErrorCode.SessionClosed]: { status: 409, code: ApiCode.SessionClosed },
  [ErrorCode.TooManySessions]: { status: 429, code: ApiCode.TooManySessions, retry: true },
  [ErrorCode.QueueFull]: { status: 503, code: ApiCode.QueueFull, retry: true },
  [ErrorCode.ModelLoading]: { status: 503, code: ApiCode.ModelLoading, retry: true },
  [ErrorCode.ModelUnavailable]: { status: 503, code: ApiCode.ModelUnavailable },
  [ErrorCode.ShuttingDown]: { status: 503, code: ApiCode.ShuttingDown, retry: true },
  [ErrorCode.OutOfMemory]: { status: 503, code: ApiCode.OutOfMemory, retry: true, message: () => 'the device ran out of memory for this request; retry later or send fewer prompts or images' },
  [ErrorCode.Disposed]: INTERNAL,
  [ErrorCode.EngineClosed]: INTERNAL,
  [ErrorCode.Bundle]: INTERNAL,
  [ErrorCode.ModelLoad]: INTERNAL,
  [ErrorCode.Inference]: INTERNAL,
  [ErrorCode.DeviceMismatch]: INTERNAL,
  [ErrorCode.Addon]: INTERNAL,
  [ErrorCode.Ffmpeg]: INTERNAL,
};

/** The shutting-down answer; also what a native resource closed under a request during shutdown becomes. */
export const SHUTTING_DOWN_MESSAGE = 'the server is shutting down; retry on another instance';

function fromSam3Error(err: Sam3Error, context: { shuttingDown: boolean; retryAfterSeconds: number }): ApiError {
  if (context.shuttingDown && (err.code === ErrorCode.Disposed || err.code === ErrorCode.EngineClosed)) {
    return new ApiError(503, ApiCode.ShuttingDown, SHUTTING_DOWN_MESSAGE, {}, { 'Retry-After': String(context.retryAfterSeconds) });
  }
  const m = ERROR_STATUS[err.code] ?? INTERNAL;
  const headers: Record<string, string> = m.retry ? { 'Retry-After': String(err.retryAfterSeconds ?? context.retryAfterSeconds) } : {};
  const details = m.status >= 500 && m.status !== 503 ? {} : (err.details ?? {});
  return new ApiError(m.status, m.code, m.message ? m.message(err) : err.message, details, headers);
}

/** Refusal of new work while the service shuts down. */
export function shuttingDown(): Sam3Error {
  return new Sam3Error(ErrorCode.ShuttingDown, SHUTTING_DOWN_MESSAGE);
}

export function errorBody(err: ApiError, requestId: string): ErrorBody {
  return { error: { code: err.code, message: err.message, details: err.details, request_id: requestId } };
}
