/** Bad input of every kind gets a clear, typed error, and the process and model keep working. */
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';

import { ErrorCode, Sam3Error, Sam3Model, createEngine } from '../src/index.js';
import type { NativeTrackerOptions } from '../src/native.js';
import { fixture, jpegImage, tempDir } from './helpers.js';

function expectCode(code: string, pattern?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof Sam3Error, `expected a Sam3Error, got ${String(err)}`);
    assert.equal(err.code, code, `code of: ${err.message}`);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

describe('bad input', () => {
  let model: Sam3Model;
  let bundle: string;
  let image: Buffer;

  before(async () => {
    bundle = (await fixture()).bundle;
    model = await Sam3Model.load(bundle, { threads: 2 });
    image = await jpegImage(64, 48, 4);
  });
  after(() => model?.dispose());

  it('corrupt image bytes', async () => {
    await assert.rejects(model.encodeImage(Buffer.from('definitely not an image')), expectCode(ErrorCode.InvalidImage, /not a readable image/));
    const truncated = image.subarray(0, 200);
    await assert.rejects(model.encodeImage(truncated), expectCode(ErrorCode.InvalidImage));
  });

  it('an empty buffer', async () => {
    await assert.rejects(model.encodeImage(Buffer.alloc(0)), expectCode(ErrorCode.InvalidImage, /empty/));
  });

  it('a 1x1 image', async () => {
    const tiny = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#f00' } }).png().toBuffer();
    await assert.rejects(model.encodeImage(tiny), expectCode(ErrorCode.InvalidImage, /1x1; both sides must be at least 8 pixels/));
  });

  it('an image above the pixel limit (decompression bomb guard)', async () => {
    const small = await Sam3Model.load(bundle, { maxPixels: 1000, warmup: false });
    try {
      await assert.rejects(small.encodeImage(image), expectCode(ErrorCode.ImageTooLarge, /64x48 = 3072 pixels, above the limit of 1000/));
    } finally {
      small.dispose();
    }
  });

  it('raw pixels of the wrong length', async () => {
    await assert.rejects(model.encodeImage({ rgb: new Uint8Array(10), width: 4, height: 4 }), expectCode(ErrorCode.InvalidArgument, /width\*height\*3/));
  });

  it('boxes outside [0, 1] or with non-positive size', async () => {
    const f = await model.encodeImage(image);
    try {
      await assert.rejects(model.segment(f, { boxes: [{ box: [0.5, 0.5, 0.6, 0.2] }] }), expectCode(ErrorCode.InvalidArgument, /not inside the image/));
      await assert.rejects(model.segment(f, { boxes: [{ box: [-0.1, 0.5, 0.2, 0.2] }] }), expectCode(ErrorCode.InvalidArgument, /not inside the image/));
      await assert.rejects(model.segment(f, { boxes: [{ box: [0.1, 0.1, 0, 0.2] }] }), expectCode(ErrorCode.InvalidArgument, /both must be > 0/));
      await assert.rejects(model.segment(f, { boxes: [{ box: [0.1, 0.1, -0.2, 0.2] }] }), expectCode(ErrorCode.InvalidArgument, /both must be > 0/));
      await assert.rejects(model.segment(f, { boxes: [{ box: [0.1, 0.1, 0.2] as never }] }), expectCode(ErrorCode.InvalidArgument, /4 finite numbers/));
      await assert.rejects(model.segment(f, { boxes: [{ box: [0.1, NaN, 0.2, 0.2] }] }), expectCode(ErrorCode.InvalidArgument, /4 finite numbers/));
      await assert.rejects(model.segment(f, { text: 'x', boxes: [{ box: [0.1, 0.1, 0.2, 0.2], label: 'yes' as never }] }), expectCode(ErrorCode.InvalidArgument, /label must be true or 1 .* or false or 0/));
    } finally {
      f.dispose();
    }
  });

  it('empty text, missing prompt, bad threshold', async () => {
    const f = await model.encodeImage(image);
    try {
      await assert.rejects(model.segment(f, { text: '' }), expectCode(ErrorCode.InvalidArgument, /text is empty/));
      await assert.rejects(model.segment(f, { text: '   ' }), expectCode(ErrorCode.InvalidArgument, /text is empty/));
      await assert.rejects(model.segment(f, {}), expectCode(ErrorCode.InvalidArgument, /needs a text or at least one box/));
      await assert.rejects(model.segment(f, { text: 'cat' }, { threshold: 1.5 }), expectCode(ErrorCode.InvalidArgument, /threshold must be a number within \[0, 1\]/));
      await assert.rejects(model.segmentBatch(f, []), expectCode(ErrorCode.InvalidArgument, /at least one prompt/));
    } finally {
      f.dispose();
    }
  });

  it('a bad headBatch or encodeBatch is refused at load', async () => {
    for (const bad of [0, 1.5, -2, Number.NaN]) {
      await assert.rejects(Sam3Model.load(bundle, { headBatch: bad, warmup: false }), expectCode(ErrorCode.InvalidArgument, /headBatch must be a positive integer/));
      await assert.rejects(Sam3Model.load(bundle, { encodeBatch: bad, warmup: false }), expectCode(ErrorCode.InvalidArgument, /encodeBatch must be a positive integer/));
    }
  });

  it('a bad pixelSkipAfter is refused at load', async () => {
    for (const pixelSkipAfter of [-1, 0.5, Number.NaN, -Infinity]) {
      await assert.rejects(
        Sam3Model.load(bundle, { pixelSkipAfter, warmup: false }),
        expectCode(ErrorCode.InvalidArgument, /pixelSkipAfter must be an integer >= 0 or Infinity/),
      );
    }
  });

  it('a disposed features handle, and a disposed model', async () => {
    const f = await model.encodeImage(image);
    f.dispose();
    assert.equal(f.disposed, true);
    await assert.rejects(model.segment(f, { text: 'cat' }), expectCode(ErrorCode.Disposed, /^segment: the image features have been disposed/));
    // The message names the method called (it said segment: for clicks too).
    await assert.rejects(model.segmentInteractive(f, { box: [0.1, 0.1, 0.5, 0.5] }), expectCode(ErrorCode.Disposed, /^segmentInteractive: the image features have been disposed/));
    f.dispose(); // twice is fine
    const other = await Sam3Model.load(bundle, { warmup: false });
    const g = await other.encodeImage(image);
    await assert.rejects(model.segment(g, { text: 'cat' }), expectCode(ErrorCode.InvalidArgument, /another model/));
    other.dispose();
    await assert.rejects(other.encodeImage(image), expectCode(ErrorCode.Disposed, /model has been disposed/));
    // Features outlive their model's weights: disposing them afterwards is still safe.
    g.dispose();
  });

  it('the native layer re-checks what it dereferences', async () => {
    const f = await model.encodeImage(image);
    const native = (model as unknown as { native: Record<string, (...a: unknown[]) => unknown> }).native;
    assert.throws(() => native.encodeImages!.call(native, [{ data: new Uint8Array(5), width: 2, height: 2 }]), /has 5 bytes but width\*height\*3 = 12/);
    assert.throws(() => native.encodeImages!.call(native, [{ data: [1, 2, 3], width: 1, height: 1 }]), /Uint8Array or Buffer/);
    assert.throws(() => native.encodeTexts!.call(native, new Int32Array(3), new Uint8Array(3), 1), /count \* 32 values/);
    assert.throws(() => native.segment!.call(native, {}, [], 0.5), /ImageFeatures handle/);
    assert.throws(() => native.segment!.call(native, f.native, [{ text: {} }], 0.5), /TextEmbedding handle/);
    f.dispose();
  });

  it('bad devices', () => {
    assert.throws(() => createEngine('tpu:0'), expectCode(ErrorCode.InvalidArgument, /unknown device 'tpu:0'/));
  });

  it('a corrupt or incomplete bundle', async () => {
    const dir = await tempDir('sam3-bad-bundle-');
    const copy = path.join(dir, 'bundle');
    cpSync(bundle, copy, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(copy, 'manifest.json'), 'utf8'));
    const vision = path.join(copy, manifest.files.vision_neck.path);

    await assert.rejects(Sam3Model.load(path.join(dir, 'nope')), expectCode(ErrorCode.Bundle, /manifest.json not found/));

    truncateSync(vision, 1000);
    await assert.rejects(Sam3Model.load(copy), expectCode(ErrorCode.Bundle, /has 1000 bytes but the manifest says/));

    // Same size, wrong bytes (the zip directory at the end of the .pt): the checksum catches it;
    // without the check, libtorch refuses the file.
    copyFileSync(path.join(bundle, manifest.files.vision_neck.path), vision);
    const bytes = readFileSync(vision);
    bytes.fill(7, bytes.length - 300);
    writeFileSync(vision, bytes);
    await assert.rejects(Sam3Model.load(copy), expectCode(ErrorCode.Bundle, /does not match its sha256/));
    await assert.rejects(Sam3Model.load(copy, { verify: false }), expectCode(ErrorCode.ModelLoad, /vision neck/));

    // A consistent manifest whose vision neck is really the text encoder: loads, then fails its
    // warm-up with a clear error instead of crashing.
    copyFileSync(path.join(bundle, manifest.files.vision_neck.path), vision);
    const swapped = { ...manifest, files: { ...manifest.files, vision_neck: manifest.files.text_encoder } };
    writeFileSync(path.join(copy, 'manifest.json'), JSON.stringify(swapped));
    await assert.rejects(Sam3Model.load(copy), expectCode(ErrorCode.ModelLoad, /warm-up run/));

    writeFileSync(path.join(copy, 'manifest.json'), JSON.stringify({ ...manifest, format_version: 99 }));
    await assert.rejects(Sam3Model.load(copy), expectCode(ErrorCode.Bundle, /format version 99 is not supported/));
    writeFileSync(path.join(copy, 'manifest.json'), '{ not json');
    await assert.rejects(Sam3Model.load(copy), expectCode(ErrorCode.Bundle, /not valid JSON/));
    writeFileSync(path.join(copy, 'manifest.json'), JSON.stringify({ ...manifest, resolution: 'big' }));
    await assert.rejects(Sam3Model.load(copy), expectCode(ErrorCode.Bundle, /invalid at 'resolution'/));
    rmSync(dir, { recursive: true, force: true });
  });

  it('after all of that the model still segments', async () => {
    const f = await model.encodeImage(image);
    const r = await model.segment(f, { text: 'cat' }, { threshold: 0 });
    assert.ok(r.numMasks > 0);
    f.dispose();
  });
});

describe('native re-checks of the tracker options', () => {
  it('loadTracker refuses a dtype it does not know, naming it, as loadModel does', async () => {
    const { bundle } = await fixture();
    // The library's own engine, with loadTracker wrapped to see the options the library passes.
    const engine = createEngine('cpu', 2);
    const native = engine.native;
    const loadTracker = native.loadTracker.bind(native);
    const passed: NativeTrackerOptions[] = [];
    // (Native methods are read-only on the prototype: shadow it with an own property.)
    Object.defineProperty(native, 'loadTracker', {
      value: (options: NativeTrackerOptions) => {
        passed.push(options);
        return loadTracker(options);
      },
    });
    const m = await Sam3Model.load(bundle, { engine, warmup: false });
    try {
      assert.equal(passed.length, 1);
      for (const dtype of ['float64', 'int8']) {
        assert.throws(
          () => loadTracker({ ...passed[0]!, dtype }),
          (err: { code?: string; message?: string }) => {
            assert.equal(err.code, ErrorCode.InvalidArgument);
            assert.match(err.message ?? '', new RegExp(`unsupported bundle dtype '${dtype}'`));
            return true;
          },
        );
      }
    } finally {
      m.dispose();
      engine.close();
    }
  });
});
