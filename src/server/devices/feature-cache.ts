/**
 * The image-feature cache of one device: encoded image features kept on the device, keyed by the
 * sha256 of the image bytes (the image_id clients see), LRU-bounded by entries and bytes, with a
 * sliding TTL (an entry expires after going unused that long; every lease renews it). Built on the library's HandleCache, whose leases keep features alive while a request uses
 * them even if they are evicted meanwhile.
 */
import { type CacheStats, HandleCache, type ImageFeatures, type Lease } from '../../index.js';

export interface FeatureCacheOptions {
  maxEntries: number;
  maxBytes: number;
  ttlMs: number;
  now?: () => number;
}

export class FeatureCache {
  private readonly cache: HandleCache<ImageFeatures>;
  private readonly sweeper: NodeJS.Timeout;
  private readonly now: () => number;
  private lastSweep: number;
  /** Lookups that found the image on no device (the pool looks up with has(), which counts nothing). */
  private misses = 0;

  constructor(readonly options: FeatureCacheOptions) {
    this.cache = new HandleCache<ImageFeatures>(options);
    this.now = options.now ?? Date.now;
    this.lastSweep = this.now();
    // Reads expire lazily; the sweep frees device memory of entries nobody asks for again.
    const every = Math.min(Math.max(options.ttlMs / 2, 1000), 60_000);
    this.sweeper = setInterval(() => this.cache.sweep(), every);
    this.sweeper.unref();
  }

  /** Whether the image is cached; expired entries are swept first (at most once a second). */
  has(imageId: string): boolean {
    const now = this.now();
    if (now - this.lastSweep >= 1000) {
      this.lastSweep = now;
      this.cache.sweep();
    }
    return this.cache.has(imageId);
  }

  /** Counts a miss for an image this device is about to encode. */
  recordMiss(): void {
    this.misses++;
  }

  lease(imageId: string): Lease<ImageFeatures> | undefined {
    return this.cache.lease(imageId);
  }

  insert(imageId: string, features: ImageFeatures): Lease<ImageFeatures> {
    return this.cache.insert(imageId, features);
  }

  /** Counts an entry's bytes again after its features grew (see HandleCache.refresh). */
  refresh(imageId: string): void {
    this.cache.refresh(imageId);
  }

  sweep(): void {
    this.cache.sweep();
  }

  stats(): CacheStats {
    const s = this.cache.stats();
    return { ...s, misses: s.misses + this.misses };
  }

  /** Stops the sweeper and frees every entry not leased (leased ones go when released). */
  close(): void {
    clearInterval(this.sweeper);
    this.cache.clear();
  }
}
