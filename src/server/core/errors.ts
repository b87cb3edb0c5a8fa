/**
 * HTTP errors. Every error response has the body {error: {code, message, details, request_id}}:
 * a stable snake_case code, a sentence saying what to change, structured details. Errors a client
 * causes are 4xx; errors we cause are 5xx, logged with the same request id the body carries.
 */
import { ErrorCode, Sam3Error } from '../index.js';

export const ApiCode = {
  ValidationError: 'validation_error',
  InvalidJson: 'invalid_json',
  InvalidBase64: 'invalid_base64',
  InvalidImage: 'invalid_image',
  ImageTooLarge: 'image_too_large',
  BodyTooLarge: 'body_too_large',
  UnsupportedMediaType: 'unsupported_media_type',
  UnknownImageId: 'unknown_image_id',
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
  UnknownObject: 'unknown_object',
  NoObjects: 'no_objects',
  UploadTooLarge: 'upload_too_large',
  UpgradeRequired: 'upgrade_required',
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
  // @koa/bodyparser (raw-body) errors.
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
  // multer errors.
  if (typeof e.code === 'string' && e.code.startsWith('LIMIT_')) {
    if (e.code === 'LIMIT_FILE_SIZE' || e.code === 'LIMIT_FIELD_VALUE') {
      return new ApiError(413, ApiCode.BodyTooLarge, `a multipart part is larger than MAX_BODY_MB = ${limitMb} MB; send a smaller image`, { max_body_bytes: context.maxBodyBytes, field: e.field ?? null });
    }
    const field = typeof e.field === 'string' ? ` (field '${e.field}')` : '';
    return new ApiError(400, ApiCode.ValidationError, `multipart form rejected${field}: ${String(e.message)}; send one file part named 'image' and the other fields as text`, { field: e.field ?? null });
  }
  if (typeof e.message === 'string' && /^(Malformed part header|Unexpected end of form|Multipart: Boundary not found)/i.test(e.message)) {
    return new ApiError(400, ApiCode.ValidationError, `malformed multipart body: ${e.message}`);
  }
  // http-errors raised by koa / @koa/router (405, 501, ...).
  const status = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status === 405) return new ApiError(405, ApiCode.MethodNotAllowed, String(e.message ?? 'method not allowed'));
  if (status >= 400 && status < 500 && e.expose === true) return new ApiError(status, ApiCode.ValidationError, String(e.message));
  return new ApiError(500, ApiCode.InternalError, 'internal server error; the server log has the details under this request id');
}

function fromSam3Error(err: Sam3Error, context: { shuttingDown: boolean; retryAfterSeconds: number }): ApiError {
  const retry = { 'Retry-After': String(context.retryAfterSeconds) };
  switch (err.code) {
    case ErrorCode.InvalidArgument:
      return new ApiError(400, ApiCode.ValidationError, err.message, err.details ?? {});
    case ErrorCode.InvalidImage:
      return new ApiError(400, ApiCode.InvalidImage, `${err.message}; send a PNG, JPEG, WebP, GIF, TIFF or AVIF image`, err.details ?? {});
    case ErrorCode.ImageTooLarge:
      return new ApiError(413, ApiCode.ImageTooLarge, err.message, err.details ?? {});
    case ErrorCode.BadVideo:
      return new ApiError(400, ApiCode.InvalidVideo, err.message, err.details ?? {});
    case ErrorCode.VideoDecode:
      return new ApiError(422, ApiCode.VideoDecodeFailed, err.message, err.details ?? {});
    case ErrorCode.FrameRange:
      return new ApiError(400, ApiCode.FrameOutOfRange, err.message, err.details ?? {});
    case ErrorCode.ForbiddenPath:
      return new ApiError(403, ApiCode.ForbiddenPath, err.message, err.details ?? {});
    case ErrorCode.MediaNotFound:
      return new ApiError(404, ApiCode.MediaNotFound, err.message, err.details ?? {});
    case ErrorCode.SessionBusy:
      return new ApiError(409, ApiCode.SessionBusy, err.message, err.details ?? {});
    case ErrorCode.UnknownObject:
      return new ApiError(404, ApiCode.UnknownObject, err.message, err.details ?? {});
    case ErrorCode.OutOfMemory:
      return new ApiError(503, ApiCode.OutOfMemory, 'the device ran out of memory for this request; retry later or send fewer prompts or images', {}, retry);
    case ErrorCode.Disposed:
    case ErrorCode.EngineClosed:
      if (context.shuttingDown) return new ApiError(503, ApiCode.ShuttingDown, 'the server is shutting down; retry on another instance', {}, retry);
      return new ApiError(500, ApiCode.InternalError, 'internal server error; the server log has the details under this request id');
    default:
      return new ApiError(500, ApiCode.InternalError, 'internal server error; the server log has the details under this request id');
  }
}

export function errorBody(err: ApiError, requestId: string): ErrorBody {
  return { error: { code: err.code, message: err.message, details: err.details, request_id: requestId } };
}
