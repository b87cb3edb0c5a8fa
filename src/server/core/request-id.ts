/** Request ids: the client's X-Request-Id when it is short and plain, a new UUID otherwise. */
import { randomUUID } from 'node:crypto';

const CLIENT_ID = /^[\w.:-]{1,128}$/;

export function requestId(given: string | undefined): string {
  return given !== undefined && CLIENT_ID.test(given) ? given : randomUUID();
}
