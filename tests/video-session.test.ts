/**
 * VideoSession behaviour on the real addon and the tiny fixture bundle: text prompts seeding objects
 * from detections, object removal, reset, cancellation, bad input, and the bounded memory bank.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ErrorCode, Sam3Model, createEngine, decodeRle } from '../src/index.js';
import type { NativeTracker, NativeTrackerOptions } from '../src/native.js';
import type { FrameSource, RgbFrame, VideoInfo } from '../src/video/source.js';
import { fixture } from './helpers.js';

const W = 64;
const H = 48;

class MemorySource implements FrameSource {
  readonly info: VideoInfo;
  readonly path = 'memory';
  reads = 0;
  closed = false;
  constructor(frames: number) {
    this.info = { totalFrames: frames, fps: 25, width: W, height: H, durationSeconds: frames / 25 };
  }
  async frame(index: number): Promise<RgbFrame> {
    this.reads++;
    const rgb = new Uint8Array(W * H * 3);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const inside = (x - 16 - (index % 30)) ** 2 + (y - 24) ** 2 < 100;
        rgb.set(inside ? [230, 40, 30] : [20 + ((x * 5) % 40), 30 + ((y * 3) % 40), 90], (y * W + x) * 3);
      }
    }
    return { rgb, width: W, height: H };
  }
  cachedBytes(): number {
    return 0;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

let model: Sam3Model;

before(async () => {
  model = await Sam3Model.load((await fixture()).bundle, { device: 'cpu' });
  assert.equal(model.supportsVideo, true);
});

after(() => model?.dispose());

async function expectCode(p: Promise<unknown> | (() => unknown), code: string) {
  await assert.rejects(async () => (typeof p === 'function' ? p() : p), (err: { code?: string }) => {
    assert.equal(err.code, code);
    return true;
  });
}

test('a text prompt makes one object per detection above the threshold, seeded with its mask', async () => {
  const source = new MemorySource(6);
  const session = await model.openVideo(source);
  try {
    // The detector on the same frame, through the image API.
    const frame = await source.frame(2);
    const feats = await model.encodeImage({ rgb: frame.rgb, width: W, height: H });
    const seg = await model.segment(feats, { text: 'red ball' }, { threshold: 0 });
    feats.dispose();
    assert.ok(seg.numMasks > 0);

    const res = await session.addPrompt({ frameIndex: 2, text: 'red ball', threshold: 0 });
    assert.equal(res.objIds.length, seg.numMasks);
    assert.deepEqual(res.objIds, [...res.objIds].sort((a, b) => a - b));
    assert.equal(res.objId, res.objIds[0]);
    assert.equal(res.masks.length, res.objIds.length);
    for (const m of res.masks) assert.deepEqual(m.size, [H, W]);
    // A mask prompt is taken as the output: object scores are the +/-10 logits of transformers.
    for (const l of res.logits) assert.ok(Math.abs(Math.abs(l) - 10) < 1e-4, `logit ${l}`);
    assert.deepEqual(session.status().objects, res.objIds);

    const none = await session.addPrompt({ frameIndex: 0, text: 'red ball', threshold: 1 });
    assert.deepEqual(none, { frameIndex: 0, objId: null, objIds: [], masks: [], boxes: [], scores: [], logits: [] });

    // Box prompts then take the next free id.
    const box = await session.addPrompt({ frameIndex: 2, box: [0.1, 0.2, 0.3, 0.4] });
    assert.equal(box.objId, Math.max(...res.objIds) + 1);

    let frames = 0;
    for await (const f of session.propagate({ direction: 'both', startFrameIndex: 2 })) {
      assert.deepEqual(f.objects.map((o) => o.id), session.status().objects);
      frames++;
    }
    assert.equal(frames, 4 + 3); // 2..5 forward, 2..0 backward
  } finally {
    await session.dispose();
  }
  assert.equal(source.closed, true);
});

test('a text prompt runs the ViT once for detector and tracker, with the same tracking as a mask prompt on that frame', async () => {
  const a = new MemorySource(5);
  const b = new MemorySource(5);
  const text = await model.openVideo(a);
  const masks = await model.openVideo(b);
  try {
    const res = await text.addPrompt({ frameIndex: 1, text: 'red ball', threshold: 0 });
    assert.ok(res.objIds.length > 0);
    // The frame was read once: the tracker took its features from the detector's ViT output.
    assert.equal(a.reads, 1);

    // The same detections as mask prompts: the tracker computes the frame's features itself.
    const frame = await b.frame(1);
    const feats = await model.encodeImage({ rgb: frame.rgb, width: W, height: H });
    const seg = await model.segment(feats, { text: 'red ball' }, { threshold: 0 });
    feats.dispose();
    assert.equal(seg.numMasks, res.objIds.length);
    for (const [i, m] of seg.masks.entries()) {
      await masks.addPrompt({ frameIndex: 1, objId: res.objIds[i], mask: decodeRle(m.counts, H, W) });
    }
    assert.ok(b.reads >= 2, 'the mask-prompted session read the frame for the tracker');

    const run = async (s: typeof text) => {
      const out = [];
      for await (const f of s.propagate({ direction: 'forward', startFrameIndex: 1 })) out.push(f);
      return out;
    };
    const got = await run(text);
    const want = await run(masks);
    assert.equal(got.length, 4);
    // The text prompt encodes the memories of all its objects in one batched pass and the mask
    // prompts one at a time, which moves float32 results in the last bits; anything else (a wrong
    // ViT output, other features) would change masks and scores grossly.
    for (const [i, f] of got.entries()) {
      const w = want[i]!;
      assert.equal(f.frameIndex, w.frameIndex);
      assert.deepEqual(f.objects.map((o) => o.id), w.objects.map((o) => o.id));
      for (const [j, o] of f.objects.entries()) {
        const q = w.objects[j]!;
        assert.deepEqual(o.mask, q.mask, `frame ${f.frameIndex}, object ${o.id}`);
        assert.ok(Math.abs(o.logit - q.logit) < 1e-5, `frame ${f.frameIndex}, object ${o.id}: logit ${o.logit} vs ${q.logit}`);
        for (let k = 0; k < 4; k++) assert.ok(Math.abs(o.box[k]! - q.box[k]!) < 1e-6);
      }
    }
  } finally {
    await text.dispose();
    await masks.dispose();
  }
});

test('removed objects stop being tracked and cannot be prompted again; reset clears everything', async () => {
  const session = await model.openVideo(new MemorySource(5));
  try {
    const a = await session.addPrompt({ frameIndex: 0, box: [0.1, 0.2, 0.3, 0.4] });
    const b = await session.addPrompt({ frameIndex: 0, points: [{ point: [0.25, 0.5], label: 1 }] });
    assert.deepEqual([a.objId, b.objId], [1, 2]);
    await session.removeObject(1);
    assert.deepEqual(session.status().objects, [2]);
    for await (const f of session.propagate({})) assert.deepEqual(f.objects.map((o) => o.id), [2]);
    await expectCode(session.addPrompt({ frameIndex: 1, objId: 1, box: [0.1, 0.2, 0.3, 0.4] }), ErrorCode.UnknownObject);
    await expectCode(session.removeObject(7), ErrorCode.UnknownObject);
    // Without objId a prompt makes a new object (ids are not reused).
    assert.equal((await session.addPrompt({ frameIndex: 1, box: [0.5, 0.2, 0.3, 0.4] })).objId, 3);
    await session.reset();
    assert.deepEqual(session.status().objects, []);
    assert.equal(session.status().prompts, 0);
    await expectCode(async () => {
      for await (const _ of session.propagate({})) break;
    }, ErrorCode.InvalidArgument);
  } finally {
    await session.dispose();
  }
});

test('bad input is refused with codes that say what to change', async () => {
  const session = await model.openVideo(new MemorySource(4));
  try {
    await expectCode(session.addPrompt({ frameIndex: 4, box: [0.1, 0.1, 0.2, 0.2] }), ErrorCode.FrameRange);
    await expectCode(session.addPrompt({ frameIndex: -1, box: [0.1, 0.1, 0.2, 0.2] }), ErrorCode.FrameRange);
    await expectCode(session.addPrompt({ frameIndex: 0, text: 'cat', box: [0.1, 0.1, 0.2, 0.2] }), ErrorCode.InvalidArgument);
    await expectCode(session.addPrompt({ frameIndex: 0 }), ErrorCode.InvalidArgument);
    await expectCode(session.addPrompt({ frameIndex: 0, box: [0.9, 0.9, 0.5, 0.5] }), ErrorCode.InvalidArgument);
    await expectCode(session.addPrompt({ frameIndex: 0, points: [{ point: [1.5, 0.2], label: 1 }] }), ErrorCode.InvalidArgument);
    await expectCode(session.addPrompt({ frameIndex: 0, points: [{ point: [0.5, 0.2], label: 3 as 1 }] }), ErrorCode.InvalidArgument);
    await expectCode(session.addPrompt({ frameIndex: 0, mask: new Uint8Array(10) }), ErrorCode.InvalidArgument);
    await session.addPrompt({ frameIndex: 0, box: [0.1, 0.1, 0.2, 0.2] });
    await expectCode(async () => {
      for await (const _ of session.propagate({ direction: 'sideways' as 'forward' })) break;
    }, ErrorCode.InvalidArgument);
    await expectCode(async () => {
      for await (const _ of session.propagate({ startFrameIndex: 9 })) break;
    }, ErrorCode.FrameRange);
    // One propagation at a time.
    const first = session.propagate({});
    await first.next();
    await expectCode(async () => {
      for await (const _ of session.propagate({})) break;
    }, ErrorCode.SessionBusy);
    await expectCode(session.addPrompt({ frameIndex: 1, box: [0.1, 0.1, 0.2, 0.2] }), ErrorCode.SessionBusy);
    await first.return(undefined);
    assert.equal(session.propagating, false);
  } finally {
    await session.dispose();
  }
  await expectCode(session.addPrompt({ frameIndex: 0, box: [0.1, 0.1, 0.2, 0.2] }), ErrorCode.Disposed);
});

test('an abort signal stops a propagation between frames', async () => {
  const session = await model.openVideo(new MemorySource(20));
  try {
    await session.addPrompt({ frameIndex: 0, box: [0.1, 0.2, 0.3, 0.4] });
    const ac = new AbortController();
    const seen: number[] = [];
    for await (const f of session.propagate({ signal: ac.signal })) {
      seen.push(f.frameIndex);
      if (seen.length === 3) ac.abort();
    }
    assert.deepEqual(seen, [0, 1, 2]);
    assert.equal(session.propagating, false);
  } finally {
    await session.dispose();
  }
});

test('the memory bank stays bounded on a long video', async () => {
  const source = new MemorySource(60);
  const session = await model.openVideo(source, { featureCacheBytes: 4 * 1024 * 1024 });
  try {
    await session.addPrompt({ frameIndex: 0, box: [0.1, 0.2, 0.3, 0.4] });
    await session.addPrompt({ frameIndex: 0, points: [{ point: [0.6, 0.5], label: 1 }] });
    const memory: number[] = [];
    for await (const f of session.propagate({})) memory[f.frameIndex] = session.status().memoryBytes;
    const at30 = memory[30]!;
    const at59 = memory[59]!;
    console.log(`video memory: ${at30} bytes at frame 30, ${at59} at frame 59 (feature cache 4 MiB, memory window 16 frames)`);
    assert.ok(at59 <= at30 * 1.05, `memory grew from ${at30} to ${at59} bytes`);
    assert.ok(at59 > 0);
  } finally {
    await session.dispose();
  }
});

test('a tracker refuses a video session of another tracker in removeObject and reset, as in prompt and step', async () => {
  const { bundle } = await fixture();
  // The library's own engine, with loadTracker wrapped to keep the tracker it loads and to load a
  // second one with the same options.
  const engine = createEngine('cpu', 1);
  const native = engine.native;
  const loadTracker = native.loadTracker.bind(native);
  const loaded: { options: NativeTrackerOptions; tracker: NativeTracker }[] = [];
  // (Native methods are read-only on the prototype: shadow it with an own property.)
  Object.defineProperty(native, 'loadTracker', {
    value: async (options: NativeTrackerOptions) => {
      const tracker = await loadTracker(options);
      loaded.push({ options, tracker });
      return tracker;
    },
  });
  const m = await Sam3Model.load(bundle, { engine, warmup: false });
  const other = await loadTracker(loaded[0]!.options);
  const video = loaded[0]!.tracker.open({ numFrames: 3, width: W, height: H, featureCacheBytes: 0 });
  try {
    const refused = (op: string) => (err: { code?: string; message?: string }) => {
      assert.equal(err.code, ErrorCode.InvalidArgument);
      assert.equal(err.message, `${op}: this video session belongs to another tracker`);
      return true;
    };
    const points = { objId: 1, points: new Float64Array([0.5, 0.5]), labels: new Int32Array([1]) };
    assert.throws(() => other.prompt(video, 0, [points]), refused('prompt'));
    assert.throws(() => other.step(video, 0, false), refused('step'));
    assert.throws(() => other.removeObject(video, 1), refused('removeObject'));
    assert.throws(() => other.reset(video), refused('reset'));
  } finally {
    video.dispose();
    other.dispose();
    m.dispose();
    engine.close();
  }
});
