/** Process-level helpers over the addon: engines, RLE, what libtorch was built with. */
import { fromNative, invalid } from './errors.js';
import { type NativeEngine, addon } from './native.js';

/** An engine is one inference thread for one device; several models may share it. */
export function createEngine(device: string, threads?: number): NativeEngine {
  try {
    return new (addon().Engine)(device, threads);
  } catch (err) {
    throw fromNative(err);
  }
}

/** COCO RLE (pycocotools' compressed string) of a binary mask given row-major, one byte per pixel. */
export function encodeRle(mask: Uint8Array, height: number, width: number): { size: [number, number]; counts: string } {
  if (!(mask instanceof Uint8Array)) throw invalid('mask must be a Uint8Array');
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) throw invalid('height and width must be positive integers');
  if (mask.byteLength !== height * width) throw invalid(`mask has ${mask.byteLength} bytes, expected height*width = ${height * width}`);
  return { size: [height, width], counts: addon().rleEncode(mask, height, width, 'row') };
}

export function runtimeInfo() {
  return addon().runtimeInfo();
}
