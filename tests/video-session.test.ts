/**
 * VideoSession behaviour on the real addon and the tiny fixture bundle: text prompts seeding objects
 * from detections, object removal, reset, cancellation, bad input, and the bounded memory bank.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ErrorCode, Sam3Model, createEngine } from '../src/index.js';
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

test('a text prompt adds a concept: its frame is detected and tracked, the same text again is the same concept, objects carry it', async () => {
  const source = new MemorySource(6);
  const session = await model.openVideo(source);
  try {
    // The detector on the same frame, through the image API: what the concept may find.
    const frame = await source.frame(2);
    const feats = await model.encodeImage({ rgb: frame.rgb, width: W, height: H });
    const seg = await model.segment(feats, { text: 'red ball' }, { threshold: 0 });
    feats.dispose();
    assert.ok(seg.numMasks > 0);

    const reads = source.reads;
    const res = await session.addPrompt({ frameIndex: 2, text: 'red ball', threshold: 0 });
    assert.equal(source.reads - reads, 1, 'one read of the frame: the tracker takes its features from the detector pass');
    assert.ok(res.objIds.length > 0 && res.objIds.length <= seg.numMasks, `${res.objIds.length} objects of ${seg.numMasks} detections (mask NMS keeps a subset)`);
    assert.deepEqual(res.objIds, [...res.objIds].sort((a, b) => a - b));
    assert.equal(res.objId, res.objIds[0]);
    assert.equal(res.masks.length, res.objIds.length);
    for (const m of res.masks) assert.deepEqual(m.size, [H, W]);
    const st = session.status();
    assert.deepEqual(st.concepts.map((c) => [c.id, c.text]), [[0, 'red ball']]);
    assert.deepEqual(st.concepts[0]!.objects, res.objIds.filter((id) => st.objects.includes(id)));

    // The same text: the same concept, its detections matched to the objects it already tracks.
    const again = await session.addPrompt({ frameIndex: 2, text: 'red ball', threshold: 0 });
    assert.deepEqual(session.status().concepts.map((c) => c.id), [0]);
    assert.ok(session.status().objects.length < 2 * res.objIds.length, 'no duplicate of every object');
    assert.ok(again.objIds.every((id) => res.objIds.includes(id)), `the same ids again: ${again.objIds} vs ${res.objIds}`);

    // A concept that finds nothing is still a concept.
    const none = await session.addPrompt({ frameIndex: 0, text: 'zebra', threshold: 1 });
    assert.deepEqual(none, { frameIndex: 0, objId: null, objIds: [], masks: [], boxes: [], scores: [], logits: [] });
    assert.deepEqual(session.status().concepts.map((c) => c.text), ['red ball', 'zebra']);

    // Box prompts take an id after every id the session has used.
    const box = await session.addPrompt({ frameIndex: 2, box: [0.1, 0.2, 0.3, 0.4] });
    assert.ok(box.objId! > Math.max(...res.objIds));

    let frames = 0;
    for await (const f of session.propagate({ direction: 'both', startFrameIndex: 2 })) {
      for (const o of f.objects) assert.equal(o.concept, o.id === box.objId ? null : 'red ball', `object ${o.id}`);
      frames++;
    }
    assert.equal(frames, 4 + 2); // 2..5 forward, then 1..0 backward (every visit detects again)
  } finally {
    await session.dispose();
  }
  assert.equal(source.closed, true);
});

test('points with the id of a concept object refine it; it stays the concept\'s', async () => {
  const session = await model.openVideo(new MemorySource(4));
  try {
    const res = await session.addPrompt({ frameIndex: 0, text: 'red ball', threshold: 0 });
    const id = res.objIds[0]!;
    const refined = await session.addPrompt({ frameIndex: 1, objId: id, points: [{ point: [0.3, 0.4], label: 1 }] });
    assert.deepEqual(refined.objIds, [id]);
    for await (const f of session.propagate({ startFrameIndex: 1, maxFrames: 2 })) {
      const o = f.objects.find((x) => x.id === id);
      if (o) assert.equal(o.concept, 'red ball', `frame ${f.frameIndex}`);
    }
    assert.ok(session.status().concepts[0]!.objects.includes(id) || !session.status().objects.includes(id));
  } finally {
    await session.dispose();
  }
});

test('removing a concept removes its objects; an unknown concept is refused', async () => {
  const session = await model.openVideo(new MemorySource(4));
  try {
    const res = await session.addPrompt({ frameIndex: 0, text: 'red ball', threshold: 0 });
    assert.ok(res.objIds.length > 0);
    await expectCode(session.removeConcept(7), ErrorCode.UnknownConcept);
    const removed = await session.removeConcept(0);
    assert.deepEqual([...removed].sort((a, b) => a - b), res.objIds.filter((id) => removed.includes(id)));
    assert.ok(removed.length > 0);
    assert.deepEqual(session.status().concepts, []);
    for (const id of removed) assert.equal(session.status().objects.includes(id), false);
    await expectCode(session.removeConcept(0), ErrorCode.UnknownConcept);
  } finally {
    await session.dispose();
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

test('a long concept propagation keeps bookkeeping for live objects only, not for every object it ever removed', async () => {
  // At 0.2 the random tiny model finds objects on every frame, and hotstart removes most of them a
  // few frames later: ids churn through the whole video.
  const churn = await Sam3Model.load((await fixture()).bundle, { device: 'cpu', concept: { score_threshold_detection: 0.2, new_det_thresh: 0.2 } });
  const session = await churn.openVideo(new MemorySource(60));
  try {
    await session.addConcept('red ball');
    const seen = new Set<number>();
    for await (const f of session.propagate({ direction: 'forward', startFrameIndex: 0 })) for (const o of f.objects) seen.add(o.id);
    const live = session.status().objects;
    const stateIds = (session as unknown as { concepts: { stateIds: number } }).concepts.stateIds;
    const created = Math.max(...seen, ...live) + 1;
    assert.ok(created - live.length >= 20, `ids churned: ${created} created, ${live.length} live`);
    // Live objects, plus the older partner of a live object's duplicate count (a pair outlives its
    // older track, as in transformers); never every id the video ever had.
    assert.ok(stateIds >= live.length && stateIds <= 2 * live.length, `state holds ${stateIds} ids for ${live.length} live objects (${created} created)`);
  } finally {
    await session.dispose();
    churn.dispose();
  }
});
