/**
 * ImageFeatures: one image encoded by a model's vision encoder, kept on the model's device. Prompt
 * it as often as you like; dispose() frees the device memory now (the GC is only a backstop).
 */
import type { NativeImageFeatures } from './native.js';

export class ImageFeatures {
  /** @internal */
  constructor(
    /** @internal */ readonly native: NativeImageFeatures,
    /** @internal The model that encoded these features (features only work with their own model). */ readonly owner: object,
  ) {}

  get width(): number {
    return this.native.width;
  }
  get height(): number {
    return this.native.height;
  }
  /** Device memory held by the features. */
  get bytes(): number {
    return this.native.bytes;
  }
  /**
   * Whether the pixel decoder's image-only share has been computed for these features (after
   * `pixelSkipAfter` prompts on them found something; it replaces two feature levels of the same
   * size, so `bytes` does not change).
   */
  get pixelSkip(): boolean {
    return this.native.pixelSkip;
  }
  get disposed(): boolean {
    return this.native.disposed;
  }
  dispose(): void {
    this.native.dispose();
  }
}
