/**
 * HTTP client of the reliability suite and its tally. Every answer is classified: a valid request
 * must succeed (2xx); a hostile one may be refused in any 4xx way, or succeed, but never be a 5xx
 * (except 503 load shedding / lifecycle answers) and never be an error without the API's JSON
 * body {error: {code, ...}}. With an API key (API_KEYS on the server) every request carries it,
 * and a 401 is just another refusal.
 */
export interface HttpRequest {
  /** The case's name, for the tally and for reproducing a failure. */
  name: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array | FormData;
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

export interface Failure {
  kind: 'server_error' | 'non_json_error' | 'valid_failed' | 'no_answer' | 'network_error' | 'ws_protocol';
  name: string;
  detail: string;
}

/** 503s that are load shedding or lifecycle, not faults. */
const RETRYABLE = new Set(['queue_full', 'model_loading', 'shutting_down']);

export class Tally {
  requests = 0;
  valid = 0;
  hostile = 0;
  wsConnections = 0;
  wsMessages = 0;
  rawConnections = 0;
  readonly statuses: Record<string, number> = {};
  readonly cases: Record<string, number> = {};
  /** Hostile requests the server cut off (e.g. a 413 before the body was sent), by case. */
  readonly cutOff: Record<string, number> = {};
  readonly failures: Failure[] = [];
  private readonly seen = new Set<string>();

  count(status: number | string): void {
    const key = String(status);
    this.statuses[key] = (this.statuses[key] ?? 0) + 1;
  }

  fail(f: Failure): void {
    // One entry per case and kind and status: the same bug seen 500 times is one line.
    const key = `${f.kind}|${f.name}|${f.detail.slice(0, 40)}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    if (this.failures.length < 200) this.failures.push(f);
  }

  /** Responses by class: 2xx, 3xx, 4xx, 5xx. */
  classes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [status, n] of Object.entries(this.statuses)) {
      const cls = /^\d{3}$/.test(status) ? `${status[0]}xx` : status;
      out[cls] = (out[cls] ?? 0) + n;
    }
    return out;
  }
}

export class Client {
  constructor(
    readonly base: string,
    readonly tally: Tally,
    private readonly apiKey?: string,
  ) {}

  get authHeaders(): Record<string, string> {
    return this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {};
  }

  /** Sends a request; undefined when the connection failed or timed out (already tallied). */
  async send(req: HttpRequest, valid: boolean, timeoutMs = 120_000): Promise<HttpAnswer | undefined> {
    this.tally.requests++;
    if (valid) this.tally.valid++;
    else this.tally.hostile++;
    this.tally.cases[req.name] = (this.tally.cases[req.name] ?? 0) + 1;
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.base + req.path, {
        method: req.method,
        headers: { ...this.authHeaders, ...req.headers },
        ...(req.body !== undefined ? { body: req.body as BodyInit } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const timedOut = e.name === 'TimeoutError';
      this.tally.count(timedOut ? 'timeout' : 'network');
      // A hostile request may be cut off by the server (a 413 before the body was sent); a valid
      // one never may, and neither may go unanswered.
      if (timedOut) this.tally.fail({ kind: 'no_answer', name: req.name, detail: `${req.method} ${req.path.slice(0, 80)}: no answer in ${timeoutMs} ms` });
      else if (!valid) this.tally.cutOff[req.name] = (this.tally.cutOff[req.name] ?? 0) + 1;
      else this.tally.fail({ kind: 'network_error', name: req.name, detail: `${e.message} ${e.cause?.code ?? e.cause?.message ?? ''}` });
      return undefined;
    }
    this.tally.count(res.status);
    let json: any;
    if ((res.headers.get('content-type') ?? '').includes('json') && text.length > 0) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    const answer: HttpAnswer = { status: res.status, headers: res.headers, text, json };
    this.check(req, answer, valid);
    return answer;
  }

  /** Applies the suite's rules to one answer. */
  check(req: { name: string; method: string; path: string }, a: { status: number; text: string; json: any }, valid: boolean): void {
    const where = `${req.method} ${req.path.slice(0, 80)}`;
    const code = a.json?.error?.code;
    if (valid) {
      if (a.status >= 300) this.tally.fail({ kind: 'valid_failed', name: req.name, detail: `${where} -> ${a.status} ${a.text.slice(0, 300)}` });
      return;
    }
    if (a.status >= 500 && !(a.status === 503 && RETRYABLE.has(code))) {
      this.tally.fail({ kind: 'server_error', name: req.name, detail: `${where} -> ${a.status} ${a.text.slice(0, 300)}` });
    }
    if (a.status >= 400 && req.method !== 'HEAD' && (typeof code !== 'string' || typeof a.json?.error?.message !== 'string')) {
      this.tally.fail({ kind: 'non_json_error', name: req.name, detail: `${where} -> ${a.status} ${a.text.slice(0, 200)}` });
    }
  }
}
