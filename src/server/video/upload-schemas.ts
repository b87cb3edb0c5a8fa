/** Response schemas of the uploads API (GET/DELETE /api/v1/video/uploads[/{video_id}]). */
import { z } from 'zod';

import { VideoInfoSchema } from './schemas.js';

const iso = z.string().meta({ format: 'date-time' });
const VIDEO_ID = 'sam3-0.0b5c8a7e-1f0d-4a43-9a59-6c1e2f3d4b5a';

export const UploadSummarySchema = z
  .object({
    video_id: z.string().meta({ description: 'The id POST /api/v1/video/upload returned (with the replica prefix when REPLICA_ID is set)' }),
    bytes: z.number().int(),
    created_at: iso.meta({ description: 'When it was uploaded' }),
    last_used_at: iso.meta({ description: 'When a session last used it (its upload time if none has)' }),
    expires_at: iso.nullable().meta({ description: 'When it is deleted if no session uses it (last use + UPLOAD_TTL_SECONDS); null while a session uses it or when UPLOAD_TTL_SECONDS is 0' }),
    in_use: z.boolean().meta({ description: 'A session is open (or being opened) on it: it cannot be deleted' }),
    sessions: z.array(z.string()).meta({ description: 'The sessions open on it' }),
  })
  .meta({
    id: 'VideoUpload',
    example: { video_id: VIDEO_ID, bytes: 1843200, created_at: '2026-05-01T10:00:00.000Z', last_used_at: '2026-05-01T10:02:13.000Z', expires_at: null, in_use: true, sessions: ['sam3-0.my-session-1'] },
  });

export const UploadDetailSchema = UploadSummarySchema.extend({ video_info: VideoInfoSchema }).meta({ id: 'VideoUploadDetail' });

export const UploadListSchema = z
  .object({
    uploads: z.array(UploadSummarySchema).meta({ description: "This replica's uploads, oldest first" }),
    count: z.number().int(),
    ttl_seconds: z.number().nullable().meta({ description: 'UPLOAD_TTL_SECONDS; null when uploads never expire' }),
  })
  .meta({ id: 'VideoUploadList' });

export const UploadDeletedSchema = z.object({ video_id: z.string(), status: z.literal('deleted') }).meta({ id: 'VideoUploadDeleted', example: { video_id: VIDEO_ID, status: 'deleted' } });
