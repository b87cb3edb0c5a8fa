/**
 * Request Content-Encoding (RFC 9110 8.4): one coding of identity, gzip (x-gzip), deflate or br,
 * case-insensitive, is inflated by a zlib stream whose output the body reader bounds; anything else
 * (zstd, compress, stacked codings like "gzip, gzip", junk) is a 415 naming what is accepted. A body
 * that is not what its header says is a 400 (see decodeError).
 */
import type { Transform } from 'node:stream';
import zlib from 'node:zlib';

import { ApiCode, ApiError } from './errors.js';

export type BodyEncoding = 'identity' | 'gzip' | 'deflate' | 'br';

export const SUPPORTED_ENCODINGS: readonly BodyEncoding[] = ['identity', 'gzip', 'deflate', 'br'];

const ALIASES: Record<string, BodyEncoding> = { identity: 'identity', gzip: 'gzip', 'x-gzip': 'gzip', deflate: 'deflate', br: 'br' };

function shown(value: string): string {
  return value.length > 40 ? `${value.slice(0, 40)}...` : value;
}

/** The request's coding; `allowed` narrows what a route accepts (multipart: identity only). */
export function requestEncoding(header: string | undefined, allowed: readonly BodyEncoding[] = SUPPORTED_ENCODINGS): BodyEncoding {
  const value = (header ?? '').trim();
  if (value === '') return 'identity';
  const coding = ALIASES[value.toLowerCase()];
  if (coding && allowed.includes(coding)) return coding;
  const why = value.includes(',') ? 'several codings are not accepted; compress once' : `'${shown(value)}' is not accepted here`;
  throw new ApiError(415, ApiCode.UnsupportedMediaType, `Content-Encoding: ${why}; send the body as ${allowed.join(', ')}`, {
    content_encoding: shown(value),
    supported: [...allowed],
  });
}

/** A stream inflating `encoding`, or undefined for identity. */
export function decoder(encoding: BodyEncoding): Transform | undefined {
  switch (encoding) {
    case 'gzip':
      return zlib.createGunzip();
    case 'deflate':
      // "deflate" is the zlib format (RFC 9110 8.4.1.2).
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return undefined;
  }
}

export function decodeError(encoding: BodyEncoding, err: unknown): ApiError {
  return new ApiError(400, ApiCode.InvalidBody, `the request body is not valid ${encoding} data (${(err as Error).message}); send it compressed as its Content-Encoding says, or without Content-Encoding`, { content_encoding: encoding });
}
