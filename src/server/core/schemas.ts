/**
 * The zod primitives every slice's schemas are built from: boxes, points, thresholds, prompt
 * texts, frame indices, masks, error bodies. The rules behind boxes and points are the library's
 * (src/prompts.ts boxProblem / pointProblem), so the HTTP API and the library refuse the same
 * values with the same words.
 */
import { z } from 'zod';

import { MASK_FORMATS, MAX_PROMPT_CHARS, type Space, boxProblem, labelProblem, pointProblem } from '../../index.js';

const quad = () => z.tuple([z.number(), z.number(), z.number(), z.number()], { error: 'box must be [x, y, width, height]: 4 numbers normalised to [0, 1]' });

/** A normalised [x, y, width, height] box in the image (or frame). */
export function boxSchema(space: Space) {
  const schema = quad().superRefine((box, ctx) => {
    const problem = boxProblem(box, 'box', space);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
  const description = `[x, y, width, height], normalised to [0, 1] by the ${space} width and height.`;
  return space === 'image' ? schema.meta({ id: 'Box', description, example: [0.3, 0.4, 0.2, 0.3] }) : schema.meta({ description, example: [0.3, 0.4, 0.2, 0.3] });
}

/** A normalised [x, y] point in the image (or frame). */
export function pointSchema(space: Space) {
  return z
    .tuple([z.number(), z.number()], { error: 'point must be [x, y]: 2 numbers normalised to [0, 1]' })
    .superRefine((point, ctx) => {
      const problem = pointProblem(point, 'point', space);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .meta({ description: `[x, y], normalised to [0, 1] by the ${space} width and height.`, example: [0.5, 0.45] });
}

/**
 * A label: a boolean or 0 / 1 alike, on image boxes, image points and video points (the library's
 * rule, src/prompts.ts labelProblem). `meaning` describes true / 1 and false / 0 for the field.
 */
export function labelSchema(meaning: string) {
  return z
    .union([z.boolean(), z.number()], { error: (issue) => labelProblem(issue.input) ?? 'label must be true or 1, or false or 0' })
    .superRefine((label, ctx) => {
      const problem = labelProblem(label);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .meta({ description: `${meaning} Booleans and the integers 1 and 0 are the same label.`, example: 1 });
}

/** true or 1 -> true. */
export const isPositive = (label: boolean | number) => label === true || label === 1;

/** How masks come back (the `mask_format` field of every mask-returning request). */
export function maskFormatSchema() {
  return z
    .enum(MASK_FORMATS as ['rle', 'polygon', 'png'], { error: `mask_format must be one of ${MASK_FORMATS.map((f) => `'${f}'`).join(', ')}` })
    .default('rle')
    .meta({
      description:
        "How masks are returned: 'rle' (COCO compressed RLE, the default), 'polygon' (COCO-style polygons with their holes, at the image size) or 'png' (a base64 8-bit greyscale PNG at the image size, 255 on the object).",
      example: 'rle',
    });
}

/** A score threshold in [0, 1], named as the request names it. */
export function thresholdSchema(field: string) {
  return z
    .number({ error: `${field} must be a number within [0, 1]` })
    .min(0, { message: `${field} must be within [0, 1]` })
    .max(1, { message: `${field} must be within [0, 1]` });
}

/** A concept prompt's text: a short noun phrase. */
export function promptTextSchema() {
  return z
    .string({ error: 'text must be a string' })
    .trim()
    .min(1, { message: 'text is empty; give a noun phrase such as "person" or "red car"' })
    .max(MAX_PROMPT_CHARS, { message: `text is longer than ${MAX_PROMPT_CHARS} characters` });
}

/** A frame index >= 0 (the upper bound depends on the session's video: checkFrameIndex). */
export function frameIndexSchema(name: string) {
  return z.number({ error: `${name} must be an integer frame index >= 0` }).int({ message: `${name} must be an integer frame index >= 0` }).min(0, { message: `${name} must be >= 0` });
}

/** Output boxes: normalised [x, y, width, height]. */
export const BoxOutSchema = z.tuple([z.number(), z.number(), z.number(), z.number()]).meta({ description: 'Normalised [x, y, width, height]' });

function rleMask(space: Space, id: string) {
  return z
    .object({
      size: z.tuple([z.number().int(), z.number().int()]).meta({ description: `[height, width] of the ${space}` }),
      counts: z.string().meta({ description: "COCO compressed RLE string (pycocotools' mask.encode / mask.decode)" }),
    })
    .meta({ id, description: `A binary mask at the ${space} size in COCO RLE; decode with pycocotools.mask.decode.`, example: { size: [480, 640], counts: 'PPa03o>2N1O1N2M3L4...' } });
}

export const RleMaskSchema = rleMask('image', 'RleMask');
export const FrameRleMaskSchema = rleMask('frame', 'VideoRleMask');

const size = z.tuple([z.number().int(), z.number().int()]).meta({ description: '[height, width] of the image (frame)' });

export const PolygonMaskSchema = z
  .object({
    size,
    polygons: z.array(z.array(z.number())).meta({
      description:
        "One outer ring per connected region, flat [x1, y1, x2, y2, ...] in pixels of the image ((0, 0) is the top-left corner of the top-left pixel), as COCO's `segmentation` polygons list them. Vertices sit midway along pixel edges (marching squares at the 0.5 level).",
    }),
    holes: z.array(z.array(z.array(z.number()))).meta({
      description:
        'holes[i]: the rings of the holes in polygons[i], in the same form (empty when it has none). The mask is the union over i of polygons[i] minus its holes; a region inside a hole is a polygon of its own. A reader of COCO polygons alone gets the regions with their holes filled.',
    }),
  })
  .meta({ id: 'PolygonMask', description: "mask_format 'polygon': a binary mask as COCO-style polygons with holes.", example: { size: [480, 640], polygons: [[120, 80.5, 121.5, 79, 200, 79, 200.5, 80, 200, 160.5, 120, 160.5]], holes: [[]] } });

export const PngMaskSchema = z
  .object({ size, png: z.string().meta({ description: 'base64 PNG, 8-bit greyscale at the image size: 255 on the object, 0 elsewhere' }) })
  .meta({ id: 'PngMask', description: "mask_format 'png': a binary mask as a PNG.", example: { size: [480, 640], png: 'iVBORw0KGgoAAAANSUhEUgAA...' } });

/** A mask in the request's mask_format. */
export function maskOutSchema(rle: typeof RleMaskSchema) {
  return z.union([rle, PolygonMaskSchema, PngMaskSchema]).meta({ description: "A mask in the request's mask_format (default 'rle')" });
}
export const MaskOutSchema = maskOutSchema(RleMaskSchema);
export const FrameMaskOutSchema = maskOutSchema(FrameRleMaskSchema);

export const ImageSizeSchema = z.object({ width: z.number().int(), height: z.number().int() }).meta({ id: 'ImageSize', example: { width: 1024, height: 768 } });

export const ErrorResponseSchema = z
  .object({
    error: z.object({
      code: z.string().meta({ example: 'validation_error' }),
      message: z.string().meta({ example: 'prompts[0].box: box has width 0 and height 0.3; both must be > 0' }),
      details: z.record(z.string(), z.unknown()),
      request_id: z.string().meta({ description: 'Also in the X-Request-Id header and the server log' }),
    }),
  })
  .meta({ id: 'ErrorResponse' });
