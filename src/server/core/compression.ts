/**
 * Response compression (koa-compress): a mask-heavy answer is hundreds of kilobytes of JSON, which
 * gzip or brotli shrink several times. The client's Accept-Encoding chooses: br, then gzip (no
 * header, or only encodings we do not offer: uncompressed). Answers under COMPRESS_THRESHOLD_BYTES
 * stay plain: compressing a small error or /health costs more than it saves. Brotli runs at quality
 * 4 (koa-compress's default), near gzip's speed with a smaller result; quality 11 would take
 * seconds on a large answer. WebSocket messages are never compressed: the upgrade does not pass
 * through this middleware and the socket runs without permessage-deflate (core/app.ts), so a
 * frame's send buffer measures what goes on the wire (video/socket.ts back-pressure).
 */
import compress from 'koa-compress';
import type { Middleware } from 'koa';


/** Answers smaller than this (bytes) are sent uncompressed. */
export const COMPRESS_THRESHOLD_BYTES = 1024;

export function compression(): Middleware {
  return compress({
    threshold: COMPRESS_THRESHOLD_BYTES,
    encodingPreference: ['br', 'gzip', 'identity'],
    br: {},
    gzip: {},
    deflate: false,
    zstd: false,
  });
}
