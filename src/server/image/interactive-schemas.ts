/**
 * Schemas of POST /api/v1/image/interactive (clicks and boxes on one object, refined call after
 * call): they validate the request and make its OpenAPI entry (image/openapi.ts).
 */
import { z } from 'zod';

import { MAX_POINTS_PER_PROMPT } from '../../index.js';
import { BoxOutSchema, ImageSizeSchema, MaskOutSchema, boxSchema, labelSchema, maskFormatSchema, pointSchema } from '../core/schemas.js';
import { ImageFieldSchema, ImageIdSchema } from './schemas.js';

/** A mask_input handle: 'mi_' and 32 hex characters, after '<replica>.' when the server has a REPLICA_ID. */
export const MASK_INPUT_ID = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)?mi_[0-9a-f]{32}$/;

export const MaskInputIdSchema = z
  .string({ error: 'mask_input must be a string: the mask_input returned by an earlier /api/v1/image/interactive call' })
  .regex(MASK_INPUT_ID, { message: "mask_input must be the 'mi_...' handle returned by an earlier /api/v1/image/interactive call on the same image (after the replica name and a dot when the server runs as a replica)" })
  .meta({
    description: "The mask_input returned by an earlier call on the same image and object: that call's best low-resolution mask logits, fed to the mask decoder to refine it.",
    example: 'mi_3f2a9c0d4b5e6f708192a3b4c5d6e7f8',
  });

export const InteractivePointSchema = z
  .strictObject({
    point: pointSchema('image'),
    label: labelSchema('1 / true: a click on the object; 0 / false: a click on the background (not the object).'),
  })
  .meta({ id: 'InteractivePoint', example: { point: [0.52, 0.41], label: 1 } });

const objectFields = {
  points: z
    .array(InteractivePointSchema, { error: 'points must be an array of {point: [x, y], label: 1 | 0}' })
    .max(MAX_POINTS_PER_PROMPT, { message: `more than ${MAX_POINTS_PER_PROMPT} points for one object` })
    .optional(),
  box: boxSchema('image').optional().meta({ description: 'A box around the object, normalised [x, y, width, height].' }),
  mask_input: MaskInputIdSchema.optional(),
};

export const InteractiveObjectSchema = z
  .strictObject(objectFields)
  .meta({ id: 'InteractiveObject', description: 'One object: clicks, a box or both (at least one), and optionally the mask_input of the previous call on it.' });

const InteractiveResultFields = {
  masks: z.array(MaskOutSchema).meta({ description: 'Candidate masks at the image size, in the model\'s order: 3 with multimask_output, else 1' }),
  iou_scores: z.array(z.number()).meta({ description: "The mask decoder's predicted IoU of each mask" }),
  boxes: z.array(BoxOutSchema).meta({ description: 'Bounding box of each mask, normalised [x, y, width, height] (zeros for an empty mask)' }),
  object_score: z.number().meta({ description: "sigmoid of the decoder's object score: whether it sees an object at the prompt" }),
  mask_input: MaskInputIdSchema.meta({ description: "Handle to this call's best mask (highest iou_score) as low-resolution logits: send it as mask_input with the next click on this object" }),
};

export const InteractiveResultSchema = z.object(InteractiveResultFields).meta({ id: 'InteractiveResult' });

export function makeInteractiveSchemas(limits: { maxPrompts: number }) {
  const InteractiveRequest = z
    .strictObject({
      image: ImageFieldSchema.optional(),
      image_id: ImageIdSchema.optional(),
      ...objectFields,
      objects: z
        .array(InteractiveObjectSchema, { error: 'objects must be an array of {points?, box?, mask_input?}' })
        .min(1, { message: 'objects is empty; give at least one object' })
        .max(limits.maxPrompts, { message: `more than ${limits.maxPrompts} objects (MAX_PROMPTS_PER_REQUEST); split the request` })
        .optional()
        .meta({ description: 'Several objects at once (instead of points / box / mask_input): they run in batched passes, and the response lists them under objects, in order.' }),
      multimask_output: z
        .boolean({ error: 'multimask_output must be true or false' })
        .default(true)
        .meta({ description: 'true (default): 3 candidate masks, right for a single click, which is ambiguous; false: one mask (the best of the 3 when the single-mask output is unstable)' }),
      mask_format: maskFormatSchema(),
    })
    .meta({
      id: 'InteractiveRequest',
      description:
        "Exactly one of image and image_id (the same feature cache and image_id as the other image endpoints: an image embedded once serves concept prompts and clicks alike). One object's points, box and mask_input, or several objects under objects.",
      example: { image_id: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', points: [{ point: [0.52, 0.41], label: 1 }, { point: [0.6, 0.3], label: 0 }], multimask_output: true },
    });

  const InteractiveResponse = z
    .object({
      ...Object.fromEntries(Object.entries(InteractiveResultFields).map(([k, v]) => [k, v.optional()])),
      objects: z.array(InteractiveResultSchema).optional().meta({ description: 'Requests with objects: one result per object, in order (the top-level result fields are then absent)' }),
      image_id: ImageIdSchema.nullable().meta({ description: 'Id to prompt this image again without resending it; null when the feature cache is off' }),
      image_size: ImageSizeSchema,
      cache_hit: z.boolean(),
      inference_time_ms: z.number(),
    })
    .meta({ id: 'InteractiveResponse', description: "One object's result at the top level, or (requests with objects) one result per object under objects." });

  return { InteractiveRequest, InteractiveResponse };
}

export type InteractiveSchemas = ReturnType<typeof makeInteractiveSchemas>;
export type InteractiveRequest = z.output<InteractiveSchemas['InteractiveRequest']>;
