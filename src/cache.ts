/**
 * A least-recently-used cache of native handles, bounded by entries, bytes and age. Evicted handles
 * are disposed, but not while a caller holds a lease on them: a lease pins the entry's handle until
 * released, so a concurrent request can never free features another request is about to use.
 */
export interface Disposable {
  readonly bytes: number;
  dispose(): void;
}

export interface CacheOptions {
  maxEntries: number;
  maxBytes?: number;
  ttlMs?: number;
  now?: () => number;
}

export interface CacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
  evictions: number;
  expirations: number;
}

interface Entry<V> {
  value: V;
  bytes: number;
  expires: number;
  pins: number;
  evicted: boolean;
}

export interface Lease<V> {
  value: V;
  release(): void;
}

export class HandleCache<V extends Disposable> {
  private readonly map = new Map<string, Entry<V>>();
  private bytes = 0;
  private readonly counters = { hits: 0, misses: 0, evictions: 0, expirations: 0 };
  private readonly now: () => number;

  constructor(private readonly options: CacheOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Returns a pinned lease on the cached value, or undefined (a miss). */
  lease(key: string): Lease<V> | undefined {
    const entry = this.map.get(key);
    if (!entry) {
      this.counters.misses++;
      return undefined;
    }
    if (entry.expires <= this.now()) {
      this.counters.expirations++;
      this.counters.misses++;
      this.remove(key, entry);
      return undefined;
    }
    // Refresh recency: Map iteration order is insertion order.
    this.map.delete(key);
    this.map.set(key, entry);
    this.counters.hits++;
    return this.pin(entry);
  }

  has(key: string): boolean {
    const entry = this.map.get(key);
    return entry !== undefined && entry.expires > this.now();
  }

  /** Stores a value and returns a lease on it. A value already under the key is replaced. */
  insert(key: string, value: V): Lease<V> {
    const old = this.map.get(key);
    if (old) this.remove(key, old);
    const entry: Entry<V> = { value, bytes: value.bytes, expires: this.now() + (this.options.ttlMs ?? Infinity), pins: 0, evicted: false };
    this.map.set(key, entry);
    this.bytes += entry.bytes;
    const lease = this.pin(entry);
    this.shrink();
    return lease;
  }

  /**
   * Counts the entry's bytes again (a value that grew, such as image features given the tracker's
   * features by an interactive call) and evicts what no longer fits.
   */
  refresh(key: string): void {
    const entry = this.map.get(key);
    if (!entry || entry.evicted) return;
    const bytes = entry.value.bytes;
    this.bytes += bytes - entry.bytes;
    entry.bytes = bytes;
    this.shrink();
  }

  delete(key: string): boolean {
    const entry = this.map.get(key);
    if (!entry) return false;
    this.remove(key, entry);
    return true;
  }

  /** Drops expired entries (call periodically; reads also expire lazily). */
  sweep(): void {
    const now = this.now();
    for (const [key, entry] of this.map) {
      if (entry.expires <= now) {
        this.counters.expirations++;
        this.remove(key, entry);
      }
    }
  }

  clear(): void {
    for (const [key, entry] of this.map) this.remove(key, entry);
  }

  stats(): CacheStats {
    return { entries: this.map.size, bytes: this.bytes, ...this.counters };
  }

  private pin(entry: Entry<V>): Lease<V> {
    entry.pins++;
    let released = false;
    return {
      value: entry.value,
      release: () => {
        if (released) return;
        released = true;
        entry.pins--;
        if (entry.evicted && entry.pins === 0) entry.value.dispose();
      },
    };
  }

  private shrink(): void {
    const maxBytes = this.options.maxBytes ?? Infinity;
    for (const [key, entry] of this.map) {
      if (this.map.size <= this.options.maxEntries && this.bytes <= maxBytes) break;
      this.counters.evictions++;
      this.remove(key, entry);
    }
  }

  private remove(key: string, entry: Entry<V>): void {
    this.map.delete(key);
    this.bytes -= entry.bytes;
    entry.evicted = true;
    if (entry.pins === 0) entry.value.dispose();
  }
}
