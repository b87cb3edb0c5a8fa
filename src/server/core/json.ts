/**
 * JSON text from clients (request bodies, multipart fields, WebSocket messages), parsed so that it
 * cannot hold the event loop or reach an object's prototype:
 * - a linear scan first bounds nesting depth and the number of values (a 24 MB array nested a
 *   million deep held the loop for seconds in JSON.parse and the validation after it); the scan
 *   skips strings with Buffer.indexOf, so a 25 MB base64 image costs milliseconds;
 * - secure-json-parse refuses `__proto__` and `constructor.prototype` keys (400), which no field
 *   of the API has.
 */
import sjson from 'secure-json-parse';

import { ApiCode, ApiError } from './errors.js';

/** Deepest nesting any request of the API needs is 5 (batch > images > prompts > box > number). */
export const MAX_JSON_DEPTH = 64;
/** Values (array items and object members) in one JSON text; a full batch request has a few thousand. */
export const MAX_JSON_VALUES = 200_000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;
const COMMA = 0x2c;

export interface JsonLimits {
  maxDepth?: number;
  maxValues?: number;
}

/** Where the text came from, for messages ("the request body", "multipart field 'prompts'"). */
function tooComplex(where: string, message: string, details: Record<string, unknown>): ApiError {
  return new ApiError(400, ApiCode.InvalidJson, `${where} ${message}`, details);
}

/**
 * Checks nesting depth and value count in one pass over the UTF-8 bytes, without parsing. Strings
 * are skipped to their closing quote (escaped quotes honoured), so brackets inside strings do not
 * count. Malformed text is left for JSON.parse to describe.
 */
export function checkJsonShape(bytes: Buffer, where: string, limits: JsonLimits = {}): void {
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  const maxValues = limits.maxValues ?? MAX_JSON_VALUES;
  let depth = 0;
  let values = 0;
  const n = bytes.length;
  for (let i = 0; i < n; i++) {
    const c = bytes[i]!;
    if (c === QUOTE) {
      // Find the closing quote: one not preceded by an odd number of backslashes.
      let j = i;
      for (;;) {
        j = bytes.indexOf(QUOTE, j + 1);
        if (j < 0) return; // unterminated string: JSON.parse reports it
        let k = j - 1;
        while (bytes[k] === BACKSLASH) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      i = j;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) {
        throw tooComplex(where, `is nested more than ${maxDepth} levels deep; no request of this API needs more than a few`, { max_depth: maxDepth });
      }
      values++;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    } else if (c === COMMA) {
      if (++values > maxValues) {
        throw tooComplex(where, `holds more than ${maxValues} values; send fewer prompts, points or images per request`, { max_values: maxValues });
      }
    }
  }
}

/**
 * Parses client JSON: shape checked first, then parsed with prototype keys refused. Errors are
 * 400 invalid_json saying where the text came from.
 */
export function parseClientJson(text: string | Buffer, where: string, limits: JsonLimits = {}): unknown {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  checkJsonShape(bytes, where, limits);
  const source = typeof text === 'string' ? text : text.toString('utf8');
  try {
    return sjson.parse(source, null, { protoAction: 'error', constructorAction: 'error' });
  } catch (err) {
    const message = (err as Error).message;
    if (/prototype property/i.test(message)) {
      throw new ApiError(400, ApiCode.InvalidJson, `${where} has a '__proto__' or 'constructor.prototype' key; no field of this API has that name, remove it`);
    }
    throw new ApiError(400, ApiCode.InvalidJson, `${where} is not valid JSON: ${message}`);
  }
}
