/**
 * Interactive segmentation on a still image (Sam3Model.segmentInteractive): clicks and a box for one
 * object, refined over several calls by handing each call the previous one's low-resolution mask
 * logits (a MaskLogits handle). SAM 3's tracker path on a single image, as transformers'
 * Sam3TrackerModel runs it: three candidate masks with their predicted IoU, or one.
 */
import { invalid } from './errors.js';
import type { NativeInteractiveObject, NativeMaskLogits } from './native.js';
import { type Box, type Label, MAX_POINTS_PER_PROMPT, type Point, validateBox, validatePoint, validatePointLabel } from './prompts.js';
import type { RleMask } from './rle.js';

/**
 * The low-resolution mask logits of an interactive call's best mask (highest predicted IoU), kept on
 * the model's device: pass it as `maskInput` of the next call on the same object. dispose() frees it
 * now (the GC is only a backstop).
 */
export class MaskLogits {
  /** @internal */
  constructor(/** @internal */ readonly native: NativeMaskLogits) {}

  get bytes(): number {
    return this.native.bytes;
  }
  get disposed(): boolean {
    return this.native.disposed;
  }
  dispose(): void {
    this.native.dispose();
  }
}

export interface InteractivePoint {
  /** Normalised [x, y] in [0, 1]. */
  point: Point;
  /** 1 or true: on the object; 0 or false: background. */
  label: Label;
}

/** One object's prompt: clicks, a box, or both (at least one), and optionally the previous call's logits. */
export interface InteractivePrompt {
  points?: InteractivePoint[];
  /** Normalised [x, y, w, h] around the object. */
  box?: Box;
  /** The `maskInput` of an earlier call on this object (refines it). */
  maskInput?: MaskLogits;
  /** segmentInteractive only: the same as InteractiveOptions.multimask. */
  multimask?: boolean;
}

export interface InteractiveOptions {
  /**
   * Three candidate masks (true, the default: the right choice for one click, which is ambiguous) or
   * one (false: the mask decoder's single-mask output, replaced by the best of the three when it is
   * unstable, as transformers does).
   */
  multimask?: boolean;
}

export interface InteractiveSegmentation {
  /** Masks at the image size, in the model's order (not sorted). */
  masks: RleMask[];
  /** The mask decoder's predicted IoU per mask. */
  iouScores: number[];
  /** Each mask's bounding box, normalised [x, y, w, h] (zeros for an empty mask). */
  boxes: Box[];
  /** sigmoid of the decoder's object score: whether it sees an object at the prompt. */
  objectScore: number;
  /** The best mask's low-res logits, for the next call on this object; dispose() when done. */
  maskInput: MaskLogits;
  imageSize: { width: number; height: number };
}

/**
 * The prompt as the addon takes it: points first, then the box's corners (labels 2, 3), which is
 * where Sam3TrackerModel's prompt encoder puts a box's embedding after the points.
 */
export function interactiveObject(prompt: InteractivePrompt, where: string): NativeInteractiveObject {
  if (!prompt || typeof prompt !== 'object') throw invalid(`${where} must be an object with points and/or box`);
  const { points, box, maskInput } = prompt;
  if (points !== undefined && !Array.isArray(points)) throw invalid(`${where}.points must be an array of {point: [x, y], label}`);
  const list = points ?? [];
  if (list.length === 0 && (box === undefined || box === null)) {
    throw invalid(`${where} has no points and no box: give at least one point (a click) or a box around the object`);
  }
  if (list.length > MAX_POINTS_PER_PROMPT) throw invalid(`${where} has ${list.length} points; the limit is ${MAX_POINTS_PER_PROMPT}`);
  const coords: number[] = [];
  const labels: number[] = [];
  list.forEach((p, i) => {
    if (!p || typeof p !== 'object') throw invalid(`${where}.points[${i}] must be {point: [x, y], label}`);
    coords.push(...validatePoint(p.point, `${where}.points[${i}].point`));
    labels.push(validatePointLabel(p.label, `${where}.points[${i}].label`));
  });
  if (box !== undefined && box !== null) {
    const [x, y, w, h] = validateBox(box, `${where}.box`);
    coords.push(x, y, x + w, y + h);
    labels.push(2, 3);
  }
  const out: NativeInteractiveObject = { points: Float64Array.from(coords), labels: Int32Array.from(labels) };
  if (maskInput !== undefined && maskInput !== null) {
    if (!(maskInput instanceof MaskLogits)) throw invalid(`${where}.maskInput must be the maskInput (a MaskLogits) of an earlier segmentInteractive call`);
    if (maskInput.disposed) throw invalid(`${where}.maskInput has been disposed`);
    out.maskInput = maskInput.native;
  }
  return out;
}
