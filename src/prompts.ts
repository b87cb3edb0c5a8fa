/**
 * The rules of prompts, in one place: boxes, points, labels, thresholds, texts and frame indices.
 * The library validates with the functions here; the server's zod schemas (server/core/schemas.ts)
 * call the same `*Problem` functions, so a rule and its message exist once.
 */
import { ErrorCode, Sam3Error, invalid } from './errors.js';

/** [x, y, width, height], normalised to [0, 1] by the image's width and height. */
export type Box = [number, number, number, number];

/** [x, y], normalised to [0, 1] by the image's width and height. */
export type Point = [number, number];

export interface BoxPrompt {
  box: Box;
  /** true or 1: an exemplar of what to find (default); false or 0: a negative exemplar. */
  label?: Label;
}

/** A concept prompt on an image: every instance of a text, of box exemplars, or both. */
export interface Prompt {
  text?: string;
  boxes?: BoxPrompt[];
}

/** 1: on the object, 0: background. */
export type PointLabel = 0 | 1;

/** A label as given: a boolean or 0 / 1 alike (true and 1: on the object, or an exemplar; false and 0: background, or a negative exemplar). */
export type Label = boolean | PointLabel;

export const MAX_BOXES_PER_PROMPT = 64;
export const MAX_POINTS_PER_PROMPT = 64;
export const MAX_PROMPT_CHARS = 1000;

/** Boxes computed in float32 may overshoot 1 slightly. */
const EPS = 1e-6;

/** What the coordinates are normalised by, for messages. */
export type Space = 'image' | 'frame';

/** Why a box of 4 finite numbers breaks the box rule, or undefined when it is fine. */
export function boxProblem([x, y, w, h]: readonly [number, number, number, number], where = 'box', space: Space = 'image'): string | undefined {
  if (w <= 0 || h <= 0) return `${where} has width ${w} and height ${h}; both must be > 0`;
  if (x < 0 || y < 0 || x + w > 1 + EPS || y + h > 1 + EPS) {
    return `${where} [${x}, ${y}, ${w}, ${h}] is outside the ${space} (it is not inside the ${space}'s unit square): boxes are normalised [x, y, width, height] with x, y >= 0 and x + width, y + height <= 1`;
  }
  return undefined;
}

/** Why a point of 2 finite numbers breaks the point rule, or undefined when it is fine. */
export function pointProblem([x, y]: readonly [number, number], where = 'point', space: Space = 'image'): string | undefined {
  if (x < 0 || y < 0 || x > 1 + EPS || y > 1 + EPS) return `${where} [${x}, ${y}] is outside the ${space}: points are normalised [x, y] within [0, 1]`;
  return undefined;
}

function finiteTuple(value: unknown, n: number): value is number[] {
  return Array.isArray(value) && value.length === n && value.every((v) => typeof v === 'number' && Number.isFinite(v));
}

/** Checks a box is [x, y, w, h] inside the unit square with positive size. */
export function validateBox(box: unknown, where: string, space: Space = 'image'): Box {
  if (!finiteTuple(box, 4)) throw invalid(`${where} must be [x, y, width, height] with 4 finite numbers`);
  const b = box as Box;
  const problem = boxProblem(b, where, space);
  if (problem) throw invalid(problem);
  return [b[0], b[1], b[2], b[3]];
}

export function validatePoint(point: unknown, where: string, space: Space = 'image'): Point {
  if (!finiteTuple(point, 2)) throw invalid(`${where} must be [x, y] normalised to [0, 1]`);
  const p = point as Point;
  const problem = pointProblem(p, where, space);
  if (problem) throw invalid(problem);
  return [p[0], p[1]];
}

/**
 * Why a label breaks the label rule, or undefined when it is fine. One rule for image boxes, image
 * points and video points: a boolean or the integers 1 and 0, with the same meaning.
 */
export function labelProblem(label: unknown, where = 'label'): string | undefined {
  if (label === true || label === false || label === 1 || label === 0) return undefined;
  return `${where} must be true or 1 (on the object; for a box, an example of what to find) or false or 0 (background; a negative example), got ${JSON.stringify(label) ?? String(label)}`;
}

/** A label (boolean or 0 / 1) as 1 or 0. */
export function validatePointLabel(label: unknown, where: string): PointLabel {
  const problem = labelProblem(label, where);
  if (problem) throw invalid(problem);
  return label === true || label === 1 ? 1 : 0;
}

/** A label (boolean or 0 / 1) as true or false. */
export function validateBoxLabel(label: unknown, where: string): boolean {
  return validatePointLabel(label, where) === 1;
}

export function validateThreshold(value: unknown, name = 'threshold'): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw invalid(`${name} must be a number within [0, 1], got ${JSON.stringify(value)}`);
  }
  return value;
}

/** A prompt text, trimmed; undefined when absent or blank. */
export function promptText(text: unknown, where: string): string | undefined {
  if (text === undefined || text === null) return undefined;
  if (typeof text !== 'string') throw invalid(`${where} must be a string`);
  const trimmed = text.trim();
  if (trimmed.length > MAX_PROMPT_CHARS) throw invalid(`${where} is ${trimmed.length} characters; the limit is ${MAX_PROMPT_CHARS}`);
  return trimmed.length > 0 ? trimmed : undefined;
}

/** Frame `value` of a video of `totalFrames` frames: an integer in [0, totalFrames). */
export function checkFrameIndex(value: unknown, totalFrames: number, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= totalFrames) {
    const shown = typeof value === 'number' ? String(value) : JSON.stringify(value);
    throw new Sam3Error(ErrorCode.FrameRange, `${name} ${shown} is out of range: the video has ${totalFrames} frames, indices 0 to ${totalFrames - 1}`, {
      // Error details are snake_case like the HTTP API's fields, whichever name the caller used.
      [name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)]: value,
      total_frames: totalFrames,
    });
  }
  return value;
}

/** A non-negative integer (object ids, frame counts). */
export function checkCount(value: unknown, name: string, max = 2 ** 31 - 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw invalid(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  }
  return value;
}
