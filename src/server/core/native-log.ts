/**
 * libtorch's own warnings (TORCH_WARN) in the server's log instead of raw stderr lines: each distinct
 * warning at warn the first time it is raised, then again when its count reaches 10, 100, 1000, ...
 * so that a warning raised for every image or frame shows how often it happens without flooding the
 * log.
 */
import type { Logger } from 'pino';

import { onNativeWarning } from '../../index.js';

/** Distinct warnings remembered; beyond it the oldest is forgotten (and would be logged again). */
const MAX_DISTINCT = 1024;

/** Starts routing; returns the function that stops it. */
export function logNativeWarnings(logger: Logger): () => void {
  const seen = new Map<string, number>();
  return onNativeWarning((w) => {
    const key = `${w.source}\u0000${w.message}`;
    const before = seen.get(key) ?? 0;
    const after = before + w.count;
    seen.delete(key);
    seen.set(key, after);
    if (seen.size > MAX_DISTINCT) seen.delete(seen.keys().next().value as string);
    const decade = (n: number) => Math.floor(Math.log10(n));
    if (before > 0 && decade(after) === decade(before)) return;
    logger.warn({ origin: 'libtorch', location: w.source, deprecation: w.deprecation, count: after }, before === 0 ? w.message : `${w.message} (raised ${after} times so far)`);
  });
}
