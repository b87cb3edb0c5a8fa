/** Token ids from the bundle's tokenizer.json (JS `tokenizers`) equal transformers' CLIP tokenizer. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Sam3Model } from '../src/index.js';
import { type ReferenceOutput, fixture, reference } from './helpers.js';

const PROMPTS = [
  'person',
  'a person',
  'car in red',
  'Red Car',
  'DOG',
  'the cat, sitting on a mat.',
  'bicycle!!!',
  "someone's hat",
  'a-b_c/d\\e',
  '  padded   with   spaces  ',
  'tab\tand\nnewline',
  'café au lait',
  'naïve Ünïcödé',
  '東京タワー',
  '🐶 dog emoji',
  'Ελληνικά γράμματα',
  'numbers 12345 and 3.14',
  '#hashtag @mention',
  '(parenthesised) [bracketed] {braced}',
  'visual',
  'x',
  'word '.repeat(40).trim(),
  'a very long prompt that goes on and on describing a scene with many objects such as cars, trucks, pedestrians, traffic lights, bicycles and dogs walking down a busy street at night',
  'supercalifragilisticexpialidocious'.repeat(4),
];

describe('CLIP tokenisation', () => {
  let model: Sam3Model;
  let ref: ReferenceOutput;

  before(async () => {
    const fx = await fixture();
    [model, ref] = await Promise.all([Sam3Model.load(fx.bundle, { warmup: false }), reference(fx.checkpoint, {}, [], PROMPTS)]);
  });
  after(() => model?.dispose());

  it('gives the same ids and attention mask as transformers for every prompt', async () => {
    const batch = await model.tokenize(PROMPTS);
    assert.equal(batch.length, 32);
    PROMPTS.forEach((p, i) => {
      const expected = ref.tokens![p]!;
      assert.deepEqual(Array.from(batch.ids.subarray(i * 32, (i + 1) * 32)), expected.input_ids, `ids of ${JSON.stringify(p)}`);
      assert.deepEqual(Array.from(batch.mask.subarray(i * 32, (i + 1) * 32)), expected.attention_mask, `mask of ${JSON.stringify(p)}`);
    });
  });

  it('truncates over-long prompts to the model length, keeping the end-of-text token', async () => {
    const batch = await model.tokenize([PROMPTS[PROMPTS.length - 2]!]);
    const ids = Array.from(batch.ids);
    assert.equal(ids.length, 32);
    assert.ok(batch.mask.every((m) => m === 1));
    assert.equal(ids[31], 49407);
    assert.equal(ids[0], 49406);
  });
});
