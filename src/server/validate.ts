/**
 * Turns zod issues into one 400 whose message names the field and says what to change, with every
 * issue listed in details.
 */
import type { z } from 'zod';

import { validationError } from './api-error.js';

/** prompts.0.box -> prompts[0].box */
export function fieldPath(path: readonly PropertyKey[], prefix = ''): string {
  let out = prefix;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || '(body)';
}

function describe(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `'${k}'`).join(', ');
    return `unknown field${issue.keys.length > 1 ? 's' : ''} ${keys}; remove ${issue.keys.length > 1 ? 'them' : 'it'} (field names are case-sensitive; /docs lists the fields)`;
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) return `is required (${issue.message.replace(/^Invalid input: /, '')})`;
  return issue.message;
}

export interface IssueDetail {
  path: string;
  message: string;
  code: string;
}

export function issuesOf(error: z.ZodError, prefix = ''): IssueDetail[] {
  return error.issues.map((i) => ({ path: fieldPath(i.path, prefix), message: describe(i), code: i.code }));
}

/** Parses `data` with `schema`, or throws a 400 naming the first problem and listing all. */
export function parseOrThrow<S extends z.ZodType>(schema: S, data: unknown, prefix = ''): z.output<S> {
  if (data === undefined || data === null || typeof data !== 'object' || Array.isArray(data)) {
    if (prefix === '') throw validationError('the request body must be a JSON object (Content-Type: application/json) or a multipart form');
  }
  const parsed = schema.safeParse(data);
  if (parsed.success) return parsed.data;
  const issues = issuesOf(parsed.error, prefix);
  const first = issues[0]!;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''}, see details.issues)` : '';
  throw validationError(`${first.path}: ${first.message}${more}`, { issues });
}
