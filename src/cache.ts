/**
 * A least-recently-used cache of native handles, bounded by entries, bytes and idle time. Evicted
 * handles are disposed, but not while a caller holds a lease on them: a lease pins the entry's handle
 * until released, so a concurrent request can never free features another request is about to use.
 *
 * Expiry slides: an entry expires ttlMs after its last use, not after its insertion. Taking a lease
 * and releasing it both renew the expiry, and an entry does not expire while leased, so a key a
 * caller has just used (and may hand on, as the server hands image_ids to clients) stays valid for a
 * full ttlMs after that use ends.
 */
export interface Disposable {
  readonly bytes: number;
  dispose(): void;
}

export interface CacheOptions {
  maxEntries: number;
  maxBytes?: number;
  /** How long an entry may go unused (no lease taken or held) before it expires; default: never. */
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
    const now = this.now();
    if (this.expired(entry, now)) {
      this.counters.expirations++;
      this.counters.misses++;
      this.remove(key, entry);
      return undefined;
    }
    // Refresh recency: Map iteration order is insertion order.
    this.map.delete(key);
    this.map.set(key, entry);
    this.renew(entry, now);
    this.counters.hits++;
    return this.pin(entry);
  }

  /** Whether the key is cached and not expired; a look that does not count as a use (no renewal). */
  has(key: string): boolean {
    const entry = this.map.get(key);
    return entry !== undefined && !this.expired(entry, this.now());
  }

  /** Stores a value and returns a lease on it. A value already under the key is replaced. */
  insert(key: string, value: V): Lease<V> {
    const old = this.map.get(key);
    if (old) this.remove(key, old);
    const entry: Entry<V> = { value, bytes: value.bytes, expires: 0, pins: 0, evicted: false };
    this.renew(entry, this.now());
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
      if (this.expired(entry, now)) {
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
        // The use ends now: the entry's idle time starts here, not when the lease was taken.
        if (!entry.evicted) this.renew(entry, this.now());
        if (entry.evicted && entry.pins === 0) entry.value.dispose();
      },
    };
  }

  private renew(entry: Entry<V>, now: number): void {
    entry.expires = now + (this.options.ttlMs ?? Infinity);
  }

  /** An entry in use (leased) is never idle, so never expired; bounds still evict it. */
  private expired(entry: Entry<V>, now: number): boolean {
    return entry.pins === 0 && entry.expires <= now;
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
