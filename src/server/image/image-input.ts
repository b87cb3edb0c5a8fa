/**
 * Where a request's image comes from: base64 or a data URL in JSON, a multipart file part, or an
 * image_id naming features already cached. Base64 is checked strictly (Buffer.from would silently
 * skip bad characters and hand garbage to the decoder).
 */
import { createHash } from 'node:crypto';

import { ApiCode, ApiError, validationError } from '../core/errors.js';

export type ImageRef = { kind: 'bytes'; bytes: Buffer; imageId: string } | { kind: 'id'; imageId: string };

const DATA_URL = /^data:([^,;]*)((?:;[^,;]*)*?);base64,/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** Decodes the `image` field: plain base64 (standard or URL-safe alphabet) or a base64 data URL. */
export function decodeImageField(value: string, where = 'image'): Buffer {
  let payload = value;
  if (/^data:/i.test(payload)) {
    const m = DATA_URL.exec(payload);
    if (!m) {
      throw new ApiError(400, ApiCode.InvalidBase64, `${where} is a data URL without ';base64,'; send data:image/...;base64,<base64 bytes>`, { field: where });
    }
    if (m[1] && !/^image\//i.test(m[1])) {
      throw new ApiError(400, ApiCode.InvalidImage, `${where} is a data URL of type '${m[1]}'; send an image (data:image/png;base64,... or data:image/jpeg;base64,...)`, { field: where, media_type: m[1] });
    }
    payload = payload.slice(m[0].length);
  }
  const original = payload;
  // Line breaks from `base64` without -w 0 are harmless; strip all whitespace.
  payload = payload.replace(/\s+/g, '');
  const alphabetOk = BASE64.test(payload) || BASE64URL.test(payload);
  const unpadded = payload.replace(/=+$/, '');
  if (!alphabetOk || payload.length === 0 || unpadded.length % 4 === 1 || (payload.includes('=') && payload.length % 4 !== 0)) {
    const bad = original.search(/[^A-Za-z0-9+/=_\s-]/);
    const at = bad >= 0 ? ` (first bad character at offset ${bad}: ${JSON.stringify(original[bad])})` : '';
    throw new ApiError(400, ApiCode.InvalidBase64, `${where} is not valid base64${at}; send the image file's bytes base64-encoded (e.g. base64 -w 0 image.jpg) or as a data URL`, { field: where });
  }
  return Buffer.from(unpadded, BASE64.test(payload) ? 'base64' : 'base64url');
}

export function contentId(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Exactly one of image (base64 / multipart bytes) and image_id. */
export function imageRef(image: string | Buffer | undefined, imageId: string | undefined, where = ''): ImageRef {
  const field = (name: string) => (where ? `${where}.${name}` : name);
  if (image !== undefined && imageId !== undefined) {
    throw validationError(`${field('image')} and ${field('image_id')} are both set; send exactly one of them`, { fields: [field('image'), field('image_id')] });
  }
  if (imageId !== undefined) return { kind: 'id', imageId };
  if (image === undefined) {
    throw validationError(`${field('image')} is required: send the image as base64 or a data URL (or as a multipart file part named 'image'), or send the ${field('image_id')} of an embedded image`, { fields: [field('image'), field('image_id')] });
  }
  const bytes = typeof image === 'string' ? decodeImageField(image, field('image')) : image;
  if (bytes.byteLength === 0) throw new ApiError(400, ApiCode.InvalidImage, `${field('image')} is empty (0 bytes)`, { field: field('image') });
  return { kind: 'bytes', bytes, imageId: contentId(bytes) };
}
