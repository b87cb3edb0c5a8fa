/**
 * Turns zod issues into one 400 whose message names the field and says what to change, with every
 * issue listed in details.
 */
import type { z } from 'zod';

import { validationError } from './errors.js';

/** prompts.0.box -> prompts[0].box */
export function fieldPath(path: readonly PropertyKey[], prefix = ''): string {
  let out = prefix;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || '(body)';
}

/** Whether the input has a value at this path (zod does not report the input by default). */
function present(data: unknown, path: readonly PropertyKey[]): boolean {
  let at: unknown = data;
  for (const key of path) {
    if (at === null || typeof at !== 'object' || !Object.hasOwn(at, key as string)) return false;
    at = (at as Record<PropertyKey, unknown>)[key];
  }
  return at !== undefined;
}

function describe(issue: z.core.$ZodIssue, data: unknown): string {
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `'${k}'`).join(', ');
    return `unknown field${issue.keys.length > 1 ? 's' : ''} ${keys}; remove ${issue.keys.length > 1 ? 'them' : 'it'} (field names are case-sensitive; /docs lists the fields)`;
  }
  if (issue.code === 'invalid_type' && !present(data, issue.path)) return `this field is required (${issue.message.replace(/^Invalid input: /, '')})`;
  return issue.message;
}

export interface IssueDetail {
  path: string;
  message: string;
  code: string;
}

/** One issue per field: zod v4 may add follow-up issues (e.g. a length check) to a value of the wrong type. */
export function issuesOf(error: z.ZodError, data: unknown, prefix = ''): IssueDetail[] {
  const seen = new Set<string>();
  const out: IssueDetail[] = [];
  for (const i of error.issues) {
    const path = fieldPath(i.path, prefix);
    if (seen.has(path)) continue;
    seen.add(path);
    out.push({ path, message: describe(i, data), code: i.code });
  }
  return out;
}

/** Parses `data` with `schema`, or throws a 400 naming the first problem and listing all. */
export function parseOrThrow<S extends z.ZodType>(schema: S, data: unknown, prefix = ''): z.output<S> {
  if (data === undefined || data === null || typeof data !== 'object' || Array.isArray(data)) {
    if (prefix === '') throw validationError('the request body must be a JSON object (Content-Type: application/json) or a multipart form');
  }
  const parsed = schema.safeParse(data);
  if (parsed.success) return parsed.data;
  const issues = issuesOf(parsed.error, data, prefix);
  const first = issues[0]!;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''}, see details.issues)` : '';
  throw validationError(`${first.path}: ${first.message}${more}`, { issues });
}
