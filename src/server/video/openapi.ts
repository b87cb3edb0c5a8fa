/** The video API's paths in the OpenAPI document (openapi.ts calls this with its registry). */
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

import { ApiCode } from '../core/errors.js';
import { errorResponses, json } from '../core/openapi.js';
import { ErrorResponseSchema } from '../core/schemas.js';
import type { VideoSchemas } from './schemas.js';
import { UploadDeletedSchema, UploadDetailSchema, UploadListSchema } from './upload-schemas.js';

const errors = errorResponses({
  400: 'Invalid input (bad JSON, unknown fields, prompt rules, a frame index out of range, a corrupt video); the message says what to change',
  403: 'video_path lies outside MEDIA_ROOT',
  404: {
    description: 'Unknown session (never opened, closed or expired), video_path / video_id, upload, object or concept',
    example: {
      code: ApiCode.SessionNotFound,
      message: "no video session 'my-session-1': it was never opened, was closed, expired after SESSION_IDLE_TIMEOUT_SECONDS unused, or was lost when the server restarted; GET /api/v1/video/sessions lists the open ones",
      details: { session_id: 'my-session-1' },
    },
  },
  408: {
    description: 'The client sent no body data for CLIENT_IDLE_TIMEOUT_MS (an upload cut off mid-file); the partial upload is deleted and the connection closed',
    example: { code: ApiCode.RequestTimeout, message: 'the client sent no body data for 15 s; send the whole body without pausing', details: { idle_timeout_ms: 15000 } },
  },
  409: 'The session is propagating (one propagation at a time; other operations wait for it), the session id is taken, the object was removed, or the session has no prompt to propagate',
  413: {
    description: 'Upload over MAX_UPLOAD_MB, or a JSON body over 1 MB',
    example: { code: ApiCode.UploadTooLarge, message: "the video is larger than MAX_UPLOAD_MB = 500 MB; send a shorter or more compressed video or raise the server's limit", details: { max_upload_bytes: 524288000 } },
  },
  415: 'Content-Type, charset or Content-Encoding not accepted (JSON as UTF-8, as identity, gzip, deflate or br; uploads without Content-Encoding)',
  422: 'The video could not be decoded',
  426: 'A WebSocket endpoint asked for without the WebSocket upgrade',
  429: 'MAX_SESSIONS sessions are open (see Retry-After)',
  501: 'The loaded model bundle has no video tracker',
  503: 'Model loading or shutting down (see Retry-After)',
});

const sessionParam = z.object({ session_id: z.string().meta({ param: { name: 'session_id', in: 'path' }, example: 'my-session-1' }) });

export function registerVideoPaths(registry: OpenAPIRegistry, s: VideoSchemas): void {
  const tags = ['video'];
  registry.registerPath({
    method: 'post',
    path: '/api/v1/video/upload',
    operationId: 'uploadVideo',
    tags,
    summary: 'Upload a video file; start sessions on it by video_id',
    description: "multipart/form-data with the file in a part named 'file', at most MAX_UPLOAD_MB. The video is probed and refused with 400 when it is not a decodable video.",
    request: { body: { required: true, content: { 'multipart/form-data': { schema: s.UploadMultipart } } } },
    responses: { 200: { description: 'The stored video', content: json(s.UploadResponse) }, ...errors(400, 408, 413, 415, 422, 500, 503) },
  });
  const videoIdParam = z.object({ video_id: z.string().meta({ param: { name: 'video_id', in: 'path' }, example: 'sam3-0.0b5c8a7e-1f0d-4a43-9a59-6c1e2f3d4b5a' }) });
  const retention =
    'An upload no session has used for UPLOAD_TTL_SECONDS (default a day; 0: never) is deleted by a periodic sweep; one a session is open on is never deleted. Only the answering replica\'s uploads are listed.';
  registry.registerPath({
    method: 'get',
    path: '/api/v1/video/uploads',
    operationId: 'listUploads',
    tags,
    summary: 'The uploaded videos, with their use and expiry',
    description: retention,
    responses: { 200: { description: 'Uploads, oldest first', content: json(UploadListSchema) }, ...errors(500) },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/video/uploads/{video_id}',
    operationId: 'getUpload',
    tags,
    summary: 'One uploaded video: size, times, sessions using it, and its video_info',
    description: retention,
    request: { params: videoIdParam },
    responses: { 200: { description: 'The upload', content: json(UploadDetailSchema) }, ...errors(400, 404, 421, 500) },
  });
  registry.registerPath({
    method: 'delete',
    path: '/api/v1/video/uploads/{video_id}',
    operationId: 'deleteUpload',
    tags,
    summary: 'Delete an uploaded video (409 while a session is open on it)',
    request: { params: videoIdParam },
    responses: {
      200: { description: 'Deleted', content: json(UploadDeletedSchema) },
      ...errors(400, 404, 421, 500),
      409: {
        description: 'A session is open on the video: close it first',
        content: {
          'application/json': {
            schema: ErrorResponseSchema,
            example: {
              error: {
                code: ApiCode.VideoInUse,
                message: "video sam3-0.0b5c8a7e-1f0d-4a43-9a59-6c1e2f3d4b5a cannot be deleted: session 'sam3-0.my-session-1' is open on it; close it first (DELETE /api/v1/video/session/{session_id})",
                details: { video_id: 'sam3-0.0b5c8a7e-1f0d-4a43-9a59-6c1e2f3d4b5a', sessions: ['sam3-0.my-session-1'] },
                request_id: '5f1c9d2e-8a3b-4c6d-9e0f-1a2b3c4d5e6f',
              },
            },
          },
        },
      },
    },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/video/session/start',
    operationId: 'startSession',
    tags,
    summary: 'Open a tracking session on a video (a path inside MEDIA_ROOT or an uploaded video_id)',
    description: 'The session is pinned to the device with the fewest sessions among those gpu_ids allows. At most MAX_SESSIONS sessions are open; one unused for SESSION_IDLE_TIMEOUT_SECONDS is closed.',
    request: { body: { required: true, content: json(s.StartSessionRequest) } },
    responses: { 200: { description: 'The session is ready for prompts', content: json(s.StartSessionResponse) }, ...errors(400, 403, 404, 409, 413, 415, 421, 422, 429, 500, 501, 503) },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/video/session/{session_id}/prompt',
    operationId: 'promptSession',
    tags,
    summary: 'Prompt a frame: a text prompt (new objects) or points and a box (one object)',
    request: { params: sessionParam, body: { required: true, content: json(s.PromptRequest) } },
    responses: { 200: { description: 'The masks of the prompted frame', content: json(s.PromptResponse) }, ...errors(400, 404, 409, 413, 415, 421, 500, 503) },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/video/session/{session_id}/propagate',
    operationId: 'propagateSession',
    tags,
    summary: 'Track the prompted objects through the video; one answer with every frame',
    description: 'A client that disconnects cancels the propagation. For frames as they are tracked, use the WebSocket /api/v1/video/ws/propagate/{session_id}.',
    request: { params: sessionParam, body: { required: true, content: json(s.PropagateRequest) } },
    responses: { 200: { description: 'Per frame, the tracked objects', content: json(s.PropagateResponse) }, ...errors(400, 404, 409, 413, 415, 421, 500, 503) },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/video/ws/propagate/{session_id}',
    operationId: 'propagateSessionWebSocket',
    tags,
    summary: 'WebSocket: stream a propagation frame by frame',
    description: [
      'Connect with a WebSocket client and send the options as a JSON text message (PropagateSocketRequest). The server sends',
      '{"type": "frame", "frame_index", "objects"} per frame as it is tracked, then {"type": "complete", "total_frames", "frames_processed", "processing_time_ms"}',
      "(total_frames: the video's frame count, as in video_info; frames_processed: the frames this run sent);",
      'errors are {"type": "error", "code", "message", "details"} (bad messages leave the socket open). {"type": "cancel"} stops a run',
      '(answered by {"type": "cancelled", "was_running": true, "total_frames", "frames_processed", "processing_time_ms"}); with no run going it is answered at once',
      'by {"type": "cancelled", "was_running": false}. Closing the socket cancels a run too. The socket stays open for further runs.',
      'With API_KEYS set, the upgrade needs a key (headers, or the subprotocol sam3.key.<base64url key> offered with sam3); without one it is refused with 401 and the JSON error body, before any socket exists.',
      'Close codes: 4404 unknown session, 4421 session of another replica, 4410 session closed during the run, 1001 server shutdown. A plain GET gets 426.',
    ].join(' '),
    request: { params: sessionParam },
    responses: {
      101: { description: 'Switching to the WebSocket protocol' },
      ...errors(426),
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/video/session/{session_id}/status',
    operationId: 'getSessionStatus',
    tags,
    summary: 'Session status: frames tracked, objects, prompts, memory held, device, activity',
    request: { params: sessionParam },
    responses: { 200: { description: 'Status', content: json(s.SessionStatus) }, ...errors(404, 421, 500) },
  });
  registry.registerPath({
    method: 'delete',
    path: '/api/v1/video/session/{session_id}/object/{obj_id}',
    operationId: 'removeObject',
    tags,
    summary: 'Stop tracking one object',
    request: { params: sessionParam.extend({ obj_id: z.string().meta({ param: { name: 'obj_id', in: 'path' }, example: '1' }) }) },
    responses: { 200: { description: 'The objects left', content: json(s.RemoveObjectResponse) }, ...errors(400, 404, 409, 421, 500) },
  });
  registry.registerPath({
    method: 'delete',
    path: '/api/v1/video/session/{session_id}/concept/{concept_id}',
    operationId: 'removeConcept',
    tags,
    summary: 'Stop tracking a text concept and remove its objects',
    request: { params: sessionParam.extend({ concept_id: z.string().meta({ param: { name: 'concept_id', in: 'path' }, example: '0' }) }) },
    responses: { 200: { description: 'The objects removed and the objects left', content: json(s.RemoveConceptResponse) }, ...errors(400, 404, 409, 421, 500) },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/video/session/{session_id}/reset',
    operationId: 'resetSession',
    tags,
    summary: 'Clear every prompt, object and tracking result of the session (the video stays open)',
    request: { params: sessionParam },
    responses: { 200: { description: 'Reset', content: json(s.ResetResponse) }, ...errors(404, 409, 421, 500) },
  });
  registry.registerPath({
    method: 'delete',
    path: '/api/v1/video/session/{session_id}',
    operationId: 'closeSession',
    tags,
    summary: 'Close the session and free its memory (a running propagation is cancelled)',
    request: { params: sessionParam },
    responses: { 200: { description: 'Closed', content: json(s.CloseResponse) }, ...errors(404, 421, 500) },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/v1/video/sessions',
    operationId: 'listSessions',
    tags,
    summary: 'The open sessions',
    responses: { 200: { description: 'Sessions', content: json(s.SessionList) } },
  });
}
