/**
 * Request bodies: JSON (with a size limit) or, where a route allows it, a multipart form with the
 * raw image file in a part named `image`. Anything else is a 415. Multipart text fields are turned
 * into the JSON shape (JSON-valued fields parsed, numbers converted) and then validated by the same
 * zod schema as a JSON body, so both forms follow one set of rules.
 */
import { bodyParser } from '@koa/bodyparser';
import multer from '@koa/multer';
import type { Context } from 'koa';

import { ApiCode, ApiError, validationError } from './errors.js';

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

export class BodyReader {
  private readonly json: ReturnType<typeof bodyParser>;
  private readonly upload: ReturnType<ReturnType<typeof multer>['single']>;

  constructor(private readonly maxBodyBytes: number) {
    this.json = bodyParser({ enableTypes: ['json'], jsonLimit: maxBodyBytes, encoding: 'utf-8', jsonStrict: true });
    this.upload = multer({
      storage: multer.memoryStorage(),
      limits: { fileSize: maxBodyBytes, files: 1, fields: 16, fieldSize: 1024 * 1024, parts: 24 },
    }).single('image');
  }

  async read(ctx: Context, multipart: MultipartFieldSpec | false): Promise<ParsedBody> {
    const declared = Number(ctx.get('content-length'));
    if (Number.isFinite(declared) && declared > this.maxBodyBytes + (multipart ? 64 * 1024 : 0)) {
      const mb = +(this.maxBodyBytes / 1024 / 1024).toFixed(2);
      throw new ApiError(413, ApiCode.BodyTooLarge, `the request body is ${declared} bytes, larger than MAX_BODY_MB = ${mb} MB; send a smaller image`, { max_body_bytes: this.maxBodyBytes });
    }
    if (ctx.is('application/json', '+json')) {
      await this.json(ctx, async () => {});
      return { fields: ctx.request.body, file: undefined };
    }
    if (multipart && ctx.is('multipart/form-data')) {
      await this.upload(ctx, async () => {});
      const raw = (ctx.request.body ?? {}) as Record<string, string | string[]>;
      const file = ctx.request.file?.buffer ?? ctx.file?.buffer;
      return { fields: convertFields(raw, multipart), file };
    }
    const got = ctx.get('content-type') || 'none';
    const accepted = multipart ? "'application/json' or 'multipart/form-data' (the file in a part named 'image')" : "'application/json'";
    throw new ApiError(415, ApiCode.UnsupportedMediaType, `Content-Type ${got} is not accepted here; send ${accepted}`, { content_type: got });
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
    return JSON.parse(text);
  } catch (err) {
    throw validationError(`multipart field '${key}' must be JSON text (e.g. [{"type": "text", "text": "person"}]): ${(err as Error).message}`, { field: key });
  }
}

function asArray(v: unknown, key: string): unknown[] {
  if (!Array.isArray(v)) throw validationError(`multipart field '${key}' must be a JSON array`, { field: key });
  return v;
}
