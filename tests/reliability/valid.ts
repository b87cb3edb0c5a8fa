/**
 * Valid traffic of the reliability suite, interleaved with the hostile cases: every request here
 * must succeed. Each step is a small client workflow (embed then prompt by id, click then refine,
 * open a video session, prompt, propagate over HTTP and WebSocket, close it).
 */
import WebSocket from 'ws';

import type { Client } from './client.js';
import type { Fixtures } from './fixtures.js';
import type { Rng } from './random.js';

export interface World {
  client: Client;
  fx: Fixtures;
  rng: Rng;
}

const json = { 'content-type': 'application/json' };
const b64 = (b: Buffer) => b.toString('base64');
const text = (t: string) => ({ type: 'text', text: t });
const WORDS = ['cat', 'a red car', 'person', 'tree', 'the sky', 'dog on grass'];

function post(w: World, name: string, path: string, body: unknown) {
  return w.client.send({ name, method: 'POST', path, headers: json, body: JSON.stringify(body) }, true);
}

export const VALID_STEPS: Record<string, (w: World) => Promise<void>> = {
  async ops(w) {
    const path = w.rng.pick(['/health', '/models/info', '/metrics', '/openapi.json', '/docs', '/api/v1/video/sessions']);
    await w.client.send({ name: `valid:GET ${path}`, method: 'GET', path }, true);
  },

  async segment(w) {
    const image = w.rng.pick(w.fx.images);
    const prompts = [text(w.rng.pick(WORDS)), ...(w.rng.chance(0.4) ? [{ type: 'box', box: [0.1, 0.1, 0.5, 0.6], label: w.rng.chance(0.8) }] : [])];
    await post(w, 'valid:segment', '/api/v1/image/segment', { image: b64(image), prompts, confidence_threshold: w.rng.next(), mask_format: w.rng.pick(['rle', 'polygon', 'png']) });
  },

  async segmentMultipart(w) {
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(w.rng.pick(w.fx.images))]), 'image.bin');
    form.append('prompts', JSON.stringify([text(w.rng.pick(WORDS))]));
    form.append('confidence_threshold', '0.3');
    await w.client.send({ name: 'valid:segment-multipart', method: 'POST', path: '/api/v1/image/segment', body: form }, true);
  },

  async embedThenById(w) {
    const embedded = await post(w, 'valid:embed', '/api/v1/image/embed', { image: b64(w.rng.pick(w.fx.images)) });
    const id = embedded?.json?.image_id;
    if (typeof id !== 'string') return;
    await post(w, 'valid:cached-features', '/api/v1/image/cached-features', { image_id: id, text_prompts: [w.rng.pick(WORDS), w.rng.pick(WORDS)] });
    await post(w, 'valid:segment-by-id', '/api/v1/image/segment', { image_id: id, prompts: [text(w.rng.pick(WORDS))] });
  },

  async batch(w) {
    const images = Array.from({ length: w.rng.int(1, 3) }, () => ({ image: b64(w.rng.pick(w.fx.images)), prompts: [text(w.rng.pick(WORDS))] }));
    await post(w, 'valid:batch', '/api/v1/image/batch', { images });
  },

  async interactive(w) {
    const image = b64(w.rng.pick(w.fx.images));
    const first = await post(w, 'valid:interactive', '/api/v1/image/interactive', { image, points: [{ point: [w.rng.next(), w.rng.next()], label: 1 }] });
    const handle = first?.json?.mask_input;
    if (typeof handle !== 'string') return;
    await post(w, 'valid:interactive-refine', '/api/v1/image/interactive', {
      image_id: first!.json.image_id,
      points: [
        { point: [0.5, 0.5], label: 1 },
        { point: [0.9, 0.1], label: 0 },
      ],
      mask_input: handle,
      multimask_output: false,
    });
  },

  async video(w) {
    const started = await post(w, 'valid:session-start', '/api/v1/video/session/start', { video_path: w.fx.videoPath });
    const id = started?.json?.session_id;
    if (typeof id !== 'string') return;
    const url = `/api/v1/video/session/${id}`;
    try {
      await post(w, 'valid:session-prompt', `${url}/prompt`, { frame_index: 0, prompts: [{ type: 'box', box: [0.2, 0.2, 0.4, 0.4] }, { type: 'point', point: [0.4, 0.4], label: 1 }] });
      await post(w, 'valid:session-propagate', `${url}/propagate`, { direction: 'forward', max_frames: w.rng.int(1, 4) });
      await w.client.send({ name: 'valid:session-status', method: 'GET', path: `${url}/status` }, true);
      if (w.rng.chance(0.5)) await propagateOverSocket(w, id, { direction: 'forward', max_frames: 2, mask_format: 'polygon' });
    } finally {
      await w.client.send({ name: 'valid:session-delete', method: 'DELETE', path: url }, true);
    }
  },

  async upload(w) {
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(w.fx.video)]), 'clip.mp4');
    const up = await w.client.send({ name: 'valid:upload', method: 'POST', path: '/api/v1/video/upload', body: form }, true);
    const videoId = up?.json?.video_id;
    if (typeof videoId !== 'string') return;
    const started = await post(w, 'valid:session-start-by-id', '/api/v1/video/session/start', { video_id: videoId });
    if (typeof started?.json?.session_id === 'string') await w.client.send({ name: 'valid:session-delete', method: 'DELETE', path: `/api/v1/video/session/${started.json.session_id}` }, true);
  },
};

/** A propagation over the WebSocket that must stream frames and end with "complete". */
export async function propagateOverSocket(w: World, sessionId: string, options: Record<string, unknown>): Promise<void> {
  const name = 'valid:ws-propagate';
  const tally = w.client.tally;
  tally.wsConnections++;
  tally.cases[name] = (tally.cases[name] ?? 0) + 1;
  const ws = new WebSocket(`${w.client.base.replace(/^http/, 'ws')}/api/v1/video/ws/propagate/${sessionId}`, { headers: w.client.authHeaders });
  const outcome = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('no complete message in 60 s'), 60_000);
    const done = (why: string) => {
      clearTimeout(timer);
      resolve(why);
    };
    ws.on('open', () => ws.send(JSON.stringify(options)));
    ws.on('message', (data) => {
      tally.wsMessages++;
      let m: { type?: string; code?: string };
      try {
        m = JSON.parse(data.toString()) as typeof m;
      } catch {
        done(`a message that is not JSON: ${data.toString().slice(0, 100)}`);
        return;
      }
      if (m.type === 'complete') done('ok');
      else if (m.type !== 'frame') done(`unexpected message ${JSON.stringify(m).slice(0, 200)}`);
    });
    ws.on('error', (err) => done(`socket error ${err.message}`));
    ws.on('close', (code) => done(`closed (${code}) before complete`));
  });
  ws.close();
  if (outcome !== 'ok') tally.fail({ kind: 'valid_failed', name, detail: outcome });
}
