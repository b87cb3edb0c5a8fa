/**
 * Where the server's videos live: client-given paths are confined to MEDIA_ROOT (no '..' escapes,
 * no absolute paths elsewhere, no symlinks pointing out), and uploads are stored under
 * MEDIA_ROOT/uploads/<video_id><ext> with a random UUID as the id.
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCode, Sam3Error } from '../../index.js';

/** File name extensions accepted for uploads (lower case). */
export const UPLOAD_EXTENSIONS: readonly string[] = ['.mp4', '.webm', '.mov', '.mkv', '.avi'];
/** Subdirectory of the media root holding uploads. */
export const UPLOADS_DIR = 'uploads';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `p` is `root` or below it (both absolute and normalised). */
function within(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

function shown(clientPath: string): string {
  return clientPath.length > 200 ? `${clientPath.slice(0, 200)}...` : clientPath;
}

function forbidden(clientPath: string): Sam3Error {
  return new Sam3Error(ErrorCode.ForbiddenPath, `video_path '${shown(clientPath)}' is outside the server's media directory; give a path relative to MEDIA_ROOT`, { video_path: shown(clientPath) });
}

function notFound(clientPath: string): Sam3Error {
  return new Sam3Error(ErrorCode.MediaNotFound, `video_path '${shown(clientPath)}' does not exist in the server's media directory`, { video_path: shown(clientPath) });
}

async function realRoot(mediaRoot: string): Promise<string> {
  try {
    return await realpath(path.resolve(mediaRoot));
  } catch (err) {
    // The server's configuration, not the client's request: a plain Error (HTTP 500).
    throw new Error(`the media root ${path.resolve(mediaRoot)} is not accessible: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Resolves a client-given path inside mediaRoot and returns its real path (symlinks resolved).
 * Relative paths are relative to mediaRoot; absolute paths must lie inside it (as configured or
 * as its real path). The lexical check comes first, so a path outside answers 403 whether or not
 * it exists; then the real path must be inside the root's real path (symlinks pointing out: 403).
 * Missing: ERR_SAM3_MEDIA_NOT_FOUND (404). Outside: ERR_SAM3_FORBIDDEN_PATH (403).
 */
export async function resolveMediaPath(mediaRoot: string, clientPath: string): Promise<string> {
  if (typeof clientPath !== 'string' || clientPath.trim() === '') {
    throw new Sam3Error(ErrorCode.InvalidArgument, 'video_path must be a non-empty path relative to the media directory');
  }
  if (clientPath.includes('\0')) throw new Sam3Error(ErrorCode.InvalidArgument, 'video_path must not contain NUL characters');
  const root = path.resolve(mediaRoot);
  const real = await realRoot(mediaRoot);
  const candidate = path.resolve(root, clientPath);
  if (!within(root, candidate) && !within(real, candidate)) throw forbidden(clientPath);
  let resolved: string;
  try {
    resolved = await realpath(candidate);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw notFound(clientPath);
    if (code === 'EACCES' || code === 'EPERM' || code === 'ELOOP') throw forbidden(clientPath);
    // The client's path, not the server: a name longer than the file system allows.
    if (code === 'ENAMETOOLONG') {
      throw new Sam3Error(ErrorCode.InvalidArgument, `video_path '${shown(clientPath)}' is too long for the file system (a name over 255 bytes or a path over 4096); give a shorter path relative to MEDIA_ROOT`, { video_path: shown(clientPath) });
    }
    throw err;
  }
  if (!within(real, resolved)) throw forbidden(clientPath);
  return resolved;
}

/**
 * Stores an uploaded video as `${mediaRoot}/uploads/<video_id><ext>`. `upload` is the temporary
 * file (moved, or copied and removed across file systems) or the bytes. The extension comes from
 * the original file name: .mp4 .webm .mov .mkv .avi, otherwise ERR_SAM3_BAD_VIDEO (400). The
 * content is not checked here: open it with openVideo.
 */
export async function storeUpload(mediaRoot: string, upload: string | Buffer, originalName: string): Promise<{ videoId: string; path: string }> {
  const name = typeof originalName === 'string' ? path.basename(originalName) : '';
  const ext = path.extname(name).toLowerCase();
  if (!UPLOAD_EXTENSIONS.includes(ext)) {
    throw new Sam3Error(ErrorCode.BadVideo, `'${shown(name)}' has the file extension '${ext || '(none)'}'; upload a ${UPLOAD_EXTENSIONS.join(', ')} video`, {
      filename: shown(name),
      allowed: [...UPLOAD_EXTENSIONS],
    });
  }
  const dir = path.join(path.resolve(mediaRoot), UPLOADS_DIR);
  await mkdir(dir, { recursive: true });
  const videoId = randomUUID();
  const dest = path.join(dir, `${videoId}${ext}`);
  if (typeof upload === 'string') {
    try {
      await rename(upload, dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      await copyFile(upload, dest, constants.COPYFILE_EXCL);
      await rm(upload, { force: true });
    }
  } else {
    await writeFile(dest, upload, { flag: 'wx' });
  }
  return { videoId, path: dest };
}

/**
 * The stored file of an uploaded video. ERR_SAM3_INVALID_ARGUMENT (400) when `videoId` is not a
 * UUID, ERR_SAM3_MEDIA_NOT_FOUND (404) when no upload has it.
 */
export async function resolveVideoId(mediaRoot: string, videoId: string): Promise<string> {
  if (typeof videoId !== 'string' || !UUID.test(videoId)) {
    throw new Sam3Error(ErrorCode.InvalidArgument, `video_id '${shown(String(videoId))}' is not a video id (the UUID that POST /video/upload returns)`);
  }
  const id = videoId.toLowerCase();
  const dir = path.join(path.resolve(mediaRoot), UPLOADS_DIR);
  for (const ext of UPLOAD_EXTENSIONS) {
    const file = path.join(dir, `${id}${ext}`);
    try {
      if ((await stat(file)).isFile()) return file;
    } catch {
      // not this extension
    }
  }
  throw new Sam3Error(ErrorCode.MediaNotFound, `no uploaded video has the video_id ${id} (never uploaded here, deleted, or expired after UPLOAD_TTL_SECONDS unused); GET /api/v1/video/uploads lists the uploads`, { video_id: id });
}
