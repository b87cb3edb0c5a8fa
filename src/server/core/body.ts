/**
 * Request bodies: JSON or, where a route allows it, a multipart form with the raw image file in a
 * part named `image`. Anything else is a 415. Multipart text fields are turned into the JSON shape
 * (JSON-valued fields parsed, numbers converted) and then validated by the same zod schema as a
 * JSON body, so both forms follow one set of rules.
 *
 * JSON bodies are read here, not by a generic body parser, so every bound is explicit: the size
 * (per route: MAX_BODY_MB where an image may come inline, 1 MB elsewhere) is checked on the
 * declared length and on the bytes as they arrive, after inflating any Content-Encoding
 * (content-encoding.ts; a decompression bomb stops at the limit); a client that stops sending
 * for CLIENT_IDLE_TIMEOUT_MS gets a 408; the text is parsed by json.ts (depth, value count,
 * prototype keys). Multipart forms (multer, which waits as long as the client does) get the same
 * 408 through multipart(). An error before the body was read whole closes the connection after
 * the answer.
 */
import type { IncomingMessage } from 'node:http';
import { PassThrough, type Transform } from 'node:stream';

import multer from '@koa/multer';
import type { Context, Middleware } from 'koa';
import getRawBody from 'raw-body';

import { type BodyEncoding, decodeError, decoder, requestEncoding } from './content-encoding.js';
import { ApiCode, ApiError, validationError } from './errors.js';
import { parseClientJson } from './json.js';

export interface ParsedBody {
  fields: unknown;
  /** The raw image file of a multipart request. */
  file: Buffer | undefined;
}

export interface MultipartFieldSpec {
  /** Fields whose text is JSON (e.g. prompts). */
  json?: string[];
  /** Fields holding a number (e.g. confidence_threshold). */
  number?: string[];
  /** Fields that are a list: a JSON array, or the field repeated once per item. */
  list?: string[];
}

export interface ReadOptions {
  /** This route's body limit (never above MAX_BODY_MB); default MAX_BODY_MB. */
  maxBytes?: number;
}

/** The body limit of routes that take no inline image (video sessions, prompts, propagation). */
export const SMALL_BODY_BYTES = 1024 * 1024;

const UTF8 = /^utf-?8$/i;

function megabytes(bytes: number): number {
  return +(bytes / 1024 / 1024).toFixed(2);
}

export class BodyReader {
  private readonly upload: ReturnType<ReturnType<typeof multer>['single']>;

  constructor(
    private readonly maxBodyBytes: number,
    /** A client that sends nothing for this long while its body is read gets a 408. */
    private readonly idleTimeoutMs = 15_000,
  ) {
    this.upload = multer({
      storage: multer.memoryStorage(),
      limits: { fileSize: maxBodyBytes, files: 1, fields: 16, fieldSize: 1024 * 1024, parts: 24 },
    }).single('image');
  }

  async read(ctx: Context, multipart: MultipartFieldSpec | false, options: ReadOptions = {}): Promise<ParsedBody> {
    const limit = Math.min(options.maxBytes ?? this.maxBodyBytes, this.maxBodyBytes);
    const declared = Number(ctx.get('content-length'));
    if (Number.isFinite(declared) && declared > limit + (multipart ? 64 * 1024 : 0)) {
      ctx.set('Connection', 'close');
      throw this.tooLarge(limit, declared);
    }
    if (ctx.is('application/json', '+json')) {
      const encoding = requestEncoding(ctx.get('content-encoding'));
      const charset = ctx.request.charset;
      if (charset && !UTF8.test(charset)) {
        throw new ApiError(415, ApiCode.UnsupportedMediaType, `charset ${charset} is not accepted; send JSON as UTF-8 (Content-Type: application/json)`, { charset });
      }
      let bytes = await this.readBytes(ctx, encoding, limit);
      if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
      return { fields: bytes.length === 0 ? {} : parseClientJson(bytes, 'the request body'), file: undefined };
    }
    if (multipart && ctx.is('multipart/form-data')) {
      requestEncoding(ctx.get('content-encoding'), ['identity']);
      await this.multipart(ctx, this.upload);
      const raw = ((ctx.request as { body?: unknown }).body ?? {}) as Record<string, string | string[]>;
      const file = ctx.request.file?.buffer ?? ctx.file?.buffer;
      return { fields: convertFields(raw, multipart), file };
    }
    const got = ctx.get('content-type') || 'none';
    const accepted = multipart ? "'application/json' or 'multipart/form-data' (the file in a part named 'image')" : "'application/json'";
    throw new ApiError(415, ApiCode.UnsupportedMediaType, `Content-Type ${got} is not accepted here; send ${accepted}`, { content_type: got });
  }

  /**
   * Runs a multer middleware under the idle timeout of JSON bodies: a client that sends no body
   * data for CLIENT_IDLE_TIMEOUT_MS mid-form gets a 408 (multer itself would wait as long as the
   * connection lives). The request is unpiped from multer first, so nothing more reaches a partial
   * file, and `discard` (removing that file) runs before the answer; the request is destroyed after
   * the answer, which makes multer tear down its parser and close the file.
   */
  async multipart(ctx: Context, upload: Middleware, discard?: () => Promise<unknown>): Promise<void> {
    const req: IncomingMessage = ctx.req;
    let stall!: () => void;
    const stalled = new Promise<false>((resolve) => (stall = () => resolve(false)));
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(stall, this.idleTimeoutMs);
    };
    // multer pipes the request into its parser synchronously, before the first byte can arrive.
    const parsing = upload(ctx, async () => {});
    req.on('data', arm);
    arm();
    try {
      if (await Promise.race([parsing.then(() => true), stalled])) return;
    } catch (err) {
      // multer's 'Request aborted' / 'Request closed': the client went away mid-form, not a fault.
      if (req.destroyed && !req.complete) throw this.abortedError();
      throw err;
    } finally {
      clearTimeout(timer);
      req.off('data', arm);
    }
    // multer settles once the request is destroyed below; its 'Request aborted' is no news then.
    parsing.catch(() => undefined);
    req.unpipe();
    // Should this fail, multer tries again when it tears down (below): the answer is still the 408.
    await discard?.().catch(() => undefined);
    ctx.set('Connection', 'close');
    // Node never ends or closes a request whose body stops, even once the connection is gone, so
    // multer would hold its parser and the partial file's descriptor: end it after the answer.
    ctx.res.once('close', () => req.destroy());
    throw this.idleError();
  }

  private abortedError(): ApiError {
    return new ApiError(400, ApiCode.InvalidBody, 'the client closed the connection before the request body was complete');
  }

  private idleError(): ApiError {
    return new ApiError(408, ApiCode.RequestTimeout, `the client sent no body data for ${this.idleTimeoutMs / 1000} s; send the whole body without pausing`, { idle_timeout_ms: this.idleTimeoutMs });
  }

  private tooLarge(limit: number, declared?: number): ApiError {
    const size = declared !== undefined ? `is ${declared} bytes, ` : 'is ';
    const which = limit === this.maxBodyBytes ? `MAX_BODY_MB = ${megabytes(limit)} MB; send a smaller image` : `${megabytes(limit)} MB, the limit of this endpoint (it takes no image)`;
    return new ApiError(413, ApiCode.BodyTooLarge, `the request body ${size}larger than ${which}`, { max_body_bytes: limit });
  }

  /** The body's bytes, inflated, at most `limit` of them. */
  private async readBytes(ctx: Context, encoding: BodyEncoding, limit: number): Promise<Buffer> {
    const req: IncomingMessage = ctx.req;
    const inflate: Transform | undefined = decoder(encoding);
    const source = inflate ?? new PassThrough();
    let corrupt: unknown;
    inflate?.once('error', (err) => (corrupt ??= err));
    const idle = this.idleError();
    const aborted = this.abortedError();
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => source.destroy(idle), this.idleTimeoutMs);
    };
    const onClose = () => {
      if (!req.complete) source.destroy(aborted);
    };
    req.on('data', arm);
    req.once('close', onClose);
    req.pipe(source);
    arm();
    try {
      return await getRawBody(source, { limit });
    } catch (err) {
      // The rest of the body is not read: the connection cannot carry another request.
      ctx.set('Connection', 'close');
      if (err === idle || err === aborted) throw err;
      if (corrupt !== undefined) throw decodeError(encoding, corrupt);
      if ((err as { type?: unknown }).type === 'entity.too.large') throw this.tooLarge(limit);
      throw err;
    } finally {
      clearTimeout(timer);
      req.off('data', arm);
      req.off('close', onClose);
      req.unpipe(source);
      if (!source.destroyed && !source.readableEnded) source.destroy();
    }
  }
}

function convertFields(raw: Record<string, string | string[]>, spec: MultipartFieldSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const values = Array.isArray(value) ? value : [value];
    if (spec.list?.includes(key)) {
      out[key] = values.flatMap((v) => (v.trim().startsWith('[') ? asArray(parseJson(key, v), key) : [v]));
    } else if (values.length > 1) {
      throw validationError(`multipart field '${key}' is given ${values.length} times; give it once`, { field: key });
    } else if (spec.json?.includes(key)) {
      out[key] = parseJson(key, values[0]!);
    } else if (spec.number?.includes(key)) {
      const n = Number(values[0]);
      out[key] = values[0]!.trim() !== '' && Number.isFinite(n) ? n : values[0];
    } else {
      out[key] = values[0];
    }
  }
  return out;
}

function parseJson(key: string, text: string): unknown {
  try {
    return parseClientJson(text, `multipart field '${key}'`);
  } catch (err) {
    if (err instanceof ApiError && /is not valid JSON/.test(err.message)) {
      throw validationError(`multipart field '${key}' must be JSON text (e.g. [{"type": "text", "text": "person"}]): ${err.message.replace(/^.*is not valid JSON: /, '')}`, { field: key });
    }
    throw err;
  }
}

function asArray(v: unknown, key: string): unknown[] {
  if (!Array.isArray(v)) throw validationError(`multipart field '${key}' must be a JSON array`, { field: key });
  return v;
}
