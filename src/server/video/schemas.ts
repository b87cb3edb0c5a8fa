/**
 * Request and response schemas of the video API (zod): they validate requests at the edge and
 * generate the OpenAPI document, like the image schemas in ../image/schemas.ts. Request objects are
 * strict: an unknown field is a 400 naming it.
 */
import { z } from 'zod';

import { MAX_POINTS_PER_PROMPT } from '../../index.js';
import { BoxOutSchema, FrameMaskOutSchema, boxSchema, frameIndexSchema, labelSchema, maskFormatSchema, pointSchema, promptTextSchema, thresholdSchema } from '../core/schemas.js';

/** Custom session ids: short and safe in a URL path and a log line. */
export const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/;

export const SessionIdSchema = z
  .string({ error: 'session_id must be a string' })
  .regex(SESSION_ID, { message: 'session_id must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -' })
  .meta({
    description: 'Session id: 1 to 64 characters of A-Z, a-z, 0-9, _ and -. Default: a random UUID. A server running as a replica (REPLICA_ID) puts its name and a dot in front of it: use the session_id of the response.',
    example: 'my-session-1',
  });

export const VideoTextPromptSchema = z
  .strictObject({
    type: z.literal('text'),
    text: promptTextSchema(),
  })
  .meta({
    id: 'VideoTextPrompt',
    description: 'Detect every instance of a concept on the frame; each detection above the threshold becomes a new tracked object. Cannot be combined with box or point prompts in one request.',
    example: { type: 'text', text: 'person' },
  });

export const VideoBoxPromptSchema = z
  .strictObject({
    type: z.literal('box'),
    box: boxSchema('frame'),
    label: labelSchema('true / 1 (the only value a video box takes): the box marks the object to track.').default(true),
  })
  .meta({ id: 'VideoBoxPrompt', description: 'A box around the object to track (at most one per request; combines with point prompts).', example: { type: 'box', box: [0.3, 0.4, 0.2, 0.3] } });

export const VideoPointPromptSchema = z
  .strictObject({
    type: z.literal('point'),
    point: pointSchema('frame'),
    label: labelSchema('1 / true: a point on the object; 0 / false: a point not on it.'),
  })
  .meta({ id: 'VideoPointPrompt', description: 'A click on the object (label 1) or off it (label 0). All points of a request, and its box, refine one object.', example: { type: 'point', point: [0.5, 0.45], label: 1 } });

export const VideoPromptItemSchema = z
  .discriminatedUnion('type', [VideoTextPromptSchema, VideoBoxPromptSchema, VideoPointPromptSchema], {
    error: "each prompt needs type 'text' (with text), 'box' (with box) or 'point' (with point and label)",
  })
  .meta({ id: 'VideoPromptItem' });

const threshold = thresholdSchema('threshold');

export const VideoInfoSchema = z
  .object({
    total_frames: z.number().int(),
    fps: z.number(),
    resolution: z.object({ width: z.number().int(), height: z.number().int() }),
    duration_seconds: z.number(),
  })
  .meta({ id: 'VideoInfo', example: { total_frames: 300, fps: 30, resolution: { width: 1920, height: 1080 }, duration_seconds: 10 } });

export const TrackedObjectSchema = z
  .object({
    id: z.number().int(),
    mask: FrameMaskOutSchema,
    box: BoxOutSchema,
    score: z.number().meta({ description: 'Box/point objects: the tracker\'s object score on this frame; concept objects: the detection score they were found with' }),
    concept: z.string().nullable().meta({ description: 'The text prompt (concept) that found the object; null for objects of box/point prompts' }),
  })
  .meta({ id: 'TrackedObject', example: { id: 1, mask: { size: [1080, 1920], counts: 'PPa03o>2N1O1N2M3L4...' }, box: [0.5, 0.5, 0.2, 0.3], score: 0.93, concept: 'person' } });

export const ConceptSchema = z
  .object({
    concept_id: z.number().int(),
    text: z.string(),
    objects: z.array(z.number().int()).meta({ description: 'Objects of the concept tracked now' }),
  })
  .meta({ id: 'VideoConcept', description: 'A text concept of the session: every instance is detected and tracked on every frame a propagation visits.' });

export const FrameResultSchema = z.object({ frame_index: z.number().int(), objects: z.array(TrackedObjectSchema) }).meta({ id: 'FrameResult' });

const iso = z.string().meta({ format: 'date-time' });

export interface VideoSchemaLimits {
  maxPrompts: number;
  defaultThreshold: number;
}

export function makeVideoSchemas(limits: VideoSchemaLimits) {
  const StartSessionRequest = z
    .strictObject({
      video_path: z
        .string({ error: 'video_path must be a string' })
        .min(1, { message: 'video_path is empty' })
        .max(4096, { message: 'video_path is longer than 4096 characters' })
        .optional()
        .meta({ description: 'A video file inside the server\'s MEDIA_ROOT, relative to it (an absolute path must lie inside it too).', example: 'clips/street.mp4' }),
      video_id: z
        .string({ error: 'video_id must be a string: the id returned by /api/v1/video/upload' })
        .min(1, { message: 'video_id is empty' })
        .max(256, { message: 'video_id is longer than 256 characters' })
        .optional()
        .meta({ description: 'The id of a video uploaded with /api/v1/video/upload' }),
      session_id: SessionIdSchema.optional(),
      gpu_ids: z
        .array(z.number({ error: 'gpu_ids must hold integer device indices' }).int({ message: 'gpu_ids must hold integer device indices' }).min(0, { message: 'gpu_ids must be >= 0' }), {
          error: 'gpu_ids must be an array of device indices into the server\'s DEVICES',
        })
        .min(1, { message: 'gpu_ids is empty; leave it out to use any device' })
        .max(64, { message: 'gpu_ids has more than 64 entries' })
        .optional()
        .meta({ description: "Indices into the server's DEVICES list that the session may run on; it is pinned to the one with the fewest sessions. Default: any.", example: [0] }),
    })
    .superRefine((v, ctx) => {
      if ((v.video_path === undefined) === (v.video_id === undefined)) {
        ctx.addIssue({ code: 'custom', path: [v.video_path === undefined ? 'video_path' : 'video_id'], message: 'give exactly one of video_path and video_id' });
      }
    })
    .meta({ id: 'StartSessionRequest', description: 'Exactly one of video_path and video_id.', example: { video_path: 'clips/street.mp4', session_id: 'street-1' } });

  const StartSessionResponse = z
    .object({ session_id: z.string(), video_info: VideoInfoSchema, status: z.literal('ready'), device: z.string().meta({ description: 'The device the session is pinned to' }) })
    .meta({ id: 'StartSessionResponse' });

  const UploadMultipart = z.object({ file: z.string().meta({ format: 'binary', description: 'The video file (MP4, MOV, WebM, MKV, AVI, ...)' }) }).meta({ id: 'VideoUploadMultipart' });
  const UploadResponse = z
    .object({ video_id: z.string().meta({ description: 'Send as video_id to /api/v1/video/session/start' }), video_info: VideoInfoSchema })
    .meta({ id: 'VideoUploadResponse' });

  const PromptRequest = z
    .strictObject({
      frame_index: frameIndexSchema('frame_index'),
      prompts: z
        .array(VideoPromptItemSchema, { error: 'prompts must be an array of {type: "text", text}, {type: "box", box} and {type: "point", point, label} objects' })
        .min(1, { message: 'prompts is empty; give a text prompt, or a box and/or points' })
        .max(Math.max(limits.maxPrompts, MAX_POINTS_PER_PROMPT + 1), { message: `more than ${Math.max(limits.maxPrompts, MAX_POINTS_PER_PROMPT + 1)} prompts` }),
      obj_id: z
        .number({ error: 'obj_id must be an integer object id or null' })
        .int({ message: 'obj_id must be an integer object id or null' })
        .min(0, { message: 'obj_id must be >= 0' })
        .nullable()
        .optional()
        .meta({ description: 'Box/point prompts: the object to refine, or the id to give a new object; null or absent: the next free id. Not allowed with a text prompt.' }),
      threshold: threshold.optional().meta({ description: `Text prompts: keep detections scoring above this. Default ${limits.defaultThreshold} (IMAGE_MODEL_CONFIDENCE_THRESHOLD).` }),
      mask_format: maskFormatSchema(),
    })
    .meta({
      id: 'VideoPromptRequest',
      description: 'One text prompt (every detection becomes a new object), or one object prompt made of at most one box and any number of points.',
      example: { frame_index: 0, prompts: [{ type: 'text', text: 'person' }], obj_id: null },
    });

  const PromptResponse = z
    .object({
      frame_index: z.number().int(),
      obj_id: z.number().int().nullable().meta({ description: 'The object of a box/point prompt; for a text prompt, the first new object (null when nothing was found)' }),
      obj_ids: z.array(z.number().int()).meta({ description: 'Every object the prompt created or refined, in the order of masks' }),
      masks: z.array(FrameMaskOutSchema),
      boxes: z.array(BoxOutSchema),
      scores: z.array(z.number()),
      concept: z.string().nullable().meta({ description: 'A text prompt: its concept (the objects listed are the concept\'s on this frame); null for box/point prompts' }),
    })
    .meta({ id: 'VideoPromptResponse' });

  const propagateFields = {
    mask_format: maskFormatSchema(),
    direction: z.enum(['forward', 'backward', 'both'], { error: "direction must be 'forward', 'backward' or 'both'" }).default('forward'),
    start_frame_index: frameIndexSchema('start_frame_index').optional().meta({ description: 'Frame to start from. Default: the earliest prompted frame' }),
    max_frames: z
      .number({ error: 'max_frames must be an integer >= 0 or null' })
      .int({ message: 'max_frames must be an integer >= 0 or null' })
      .min(0, { message: 'max_frames must be >= 0' })
      .nullable()
      .optional()
      .meta({
        description:
          'Frames to track beyond the start frame in each direction (as transformers\' max_frame_num_to_track: forward from s gives frames s..s+max_frames); null or absent: to the end of the video. The start frame is always in the results, once.',
      }),
  };

  const PropagateRequest = z
    .strictObject({
      ...propagateFields,
      stream: z.boolean({ error: 'stream must be false here; stream over the WebSocket /api/v1/video/ws/propagate/{session_id}' }).optional(),
    })
    .meta({ id: 'PropagateRequest', example: { direction: 'both', start_frame_index: 0, max_frames: 100, stream: false } });

  const PropagateSocketRequest = z
    .strictObject({ type: z.literal('propagate').optional(), ...propagateFields })
    .meta({ id: 'PropagateSocketRequest', description: 'Sent as a JSON text message on the WebSocket; {"type": "cancel"} stops a running propagation (and is answered by {"type": "cancelled", "was_running"} also when none runs).', example: { direction: 'forward', start_frame_index: 0, max_frames: null } });

  const PropagateResponse = z
    .object({
      session_id: z.string(),
      results: z.record(z.string(), FrameResultSchema).meta({ description: 'Per frame index (as a string key), the tracked objects on that frame' }),
      total_frames: z.number().int().meta({ description: "The video's frame count (as in video_info)" }),
      frames_processed: z.number().int().meta({ description: 'Frames this propagation tracked: the entries of results' }),
      processing_time_ms: z.number(),
    })
    .meta({ id: 'PropagateResponse' });

  const SessionSummary = z
    .object({
      session_id: z.string(),
      video_info: VideoInfoSchema,
      video_path: z.string().nullable(),
      video_id: z.string().nullable(),
      device: z.string(),
      objects: z.array(z.number().int()),
      concepts: z.array(ConceptSchema),
      propagating: z.boolean(),
      created_at: iso,
      last_activity: iso,
    })
    .meta({ id: 'VideoSessionSummary' });

  const SessionStatus = z
    .object({
      session_id: z.string(),
      status: z.enum(['ready', 'propagating']),
      video_info: VideoInfoSchema,
      device: z.string(),
      total_frames: z.number().int(),
      frames_tracked: z.number().int().meta({ description: 'Frames that have tracking results' }),
      objects: z.array(z.number().int()),
      num_objects: z.number().int(),
      concepts: z.array(ConceptSchema),
      prompts: z.number().int(),
      memory_bytes: z.number().int().meta({ description: 'Memory the session holds (tracker state, cached features and frames)' }),
      propagating: z.boolean(),
      created_at: iso,
      last_activity: iso,
      expires_at: iso.nullable().meta({ description: 'When the session closes if unused (SESSION_IDLE_TIMEOUT_SECONDS); null while propagating' }),
    })
    .meta({ id: 'VideoSessionStatus' });

  const SessionList = z
    .object({ sessions: z.array(SessionSummary), count: z.number().int(), max_sessions: z.number().int() })
    .meta({ id: 'VideoSessionList' });

  const RemoveObjectResponse = z
    .object({ session_id: z.string(), obj_id: z.number().int(), objects: z.array(z.number().int()).meta({ description: 'Objects left' }) })
    .meta({ id: 'RemoveObjectResponse' });
  const RemoveConceptResponse = z
    .object({
      session_id: z.string(),
      concept_id: z.number().int(),
      removed_objects: z.array(z.number().int()).meta({ description: 'The concept\'s objects, removed with it' }),
      objects: z.array(z.number().int()).meta({ description: 'Objects left' }),
    })
    .meta({ id: 'RemoveConceptResponse' });
  const ResetResponse = z.object({ session_id: z.string(), status: z.literal('ready'), objects: z.array(z.number().int()) }).meta({ id: 'ResetSessionResponse' });
  const CloseResponse = z.object({ session_id: z.string(), status: z.literal('closed') }).meta({ id: 'CloseSessionResponse' });

  return {
    StartSessionRequest,
    StartSessionResponse,
    UploadMultipart,
    UploadResponse,
    PromptRequest,
    PromptResponse,
    PropagateRequest,
    PropagateSocketRequest,
    PropagateResponse,
    SessionStatus,
    SessionList,
    RemoveObjectResponse,
    RemoveConceptResponse,
    ResetResponse,
    CloseResponse,
  };
}

export type VideoSchemas = ReturnType<typeof makeVideoSchemas>;
export type PromptRequest = z.output<VideoSchemas['PromptRequest']>;
export type PropagateFields = z.output<VideoSchemas['PropagateSocketRequest']>;
