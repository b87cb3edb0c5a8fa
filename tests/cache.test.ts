// The library's HandleCache (src/cache.ts) on a test clock: expiry slides from the last use (a
// lease taken or released renews it, a leased entry never expires), has() does not count as a use,
// and the entry bound still evicts leased entries, which are disposed only once released. The
// values are plain records of their disposal: the cache is generic over any disposable handle.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { HandleCache } from '../src/cache.js';

const TTL = 1000;

class Handle {
  disposed = 0;
  readonly bytes = 10;
  dispose(): void {
    this.disposed++;
  }
}

function setup(maxEntries = 8) {
  const clock = { t: 0 };
  const cache = new HandleCache<Handle>({ maxEntries, ttlMs: TTL, now: () => clock.t });
  const put = (key: string) => {
    const h = new Handle();
    cache.insert(key, h).release();
    return h;
  };
  return { clock, cache, put };
}

describe('HandleCache expiry', () => {
  it('an entry used at 0.9 TTL is still there at 1.5 TTL; one not used expires at TTL', () => {
    const { clock, cache, put } = setup();
    const used = put('used');
    const idle = put('idle');
    clock.t = 0.9 * TTL;
    const lease = cache.lease('used');
    assert.ok(lease, 'a hit before the TTL');
    lease.release();
    clock.t = TTL;
    assert.equal(cache.has('idle'), false, 'unused since insertion: expired at TTL');
    assert.equal(cache.lease('idle'), undefined);
    assert.equal(idle.disposed, 1);
    clock.t = 1.5 * TTL;
    assert.equal(cache.has('used'), true, 'renewed by the hit at 0.9 TTL');
    const again = cache.lease('used');
    assert.ok(again);
    again.release();
    assert.equal(used.disposed, 0);
    // Idle from 1.5 TTL on: still there just before 2.5 TTL, gone at it.
    clock.t = 2.5 * TTL - 1;
    cache.sweep();
    assert.equal(cache.has('used'), true);
    clock.t = 2.5 * TTL;
    cache.sweep();
    assert.equal(cache.has('used'), false);
    assert.equal(used.disposed, 1);
    assert.deepEqual(
      { hits: cache.stats().hits, expirations: cache.stats().expirations, entries: cache.stats().entries },
      { hits: 2, expirations: 2, entries: 0 },
    );
  });

  it('has() is a look, not a use: it does not renew', () => {
    const { clock, cache, put } = setup();
    put('a');
    clock.t = 0.9 * TTL;
    assert.equal(cache.has('a'), true);
    clock.t = TTL;
    assert.equal(cache.has('a'), false);
  });

  it('a leased entry does not expire; its idle time starts when the lease is released', () => {
    const { clock, cache } = setup();
    const h = new Handle();
    const lease = cache.insert('a', h);
    clock.t = 3 * TTL; // a use that outlasts the TTL
    cache.sweep();
    assert.equal(cache.has('a'), true, 'in use, so not idle');
    lease.release();
    clock.t = 4 * TTL - 1;
    cache.sweep();
    assert.equal(cache.has('a'), true, 'TTL counted from the release at 3 TTL');
    clock.t = 4 * TTL;
    cache.sweep();
    assert.equal(cache.has('a'), false);
    assert.equal(h.disposed, 1);
  });

  it('the entry bound still evicts a leased entry, disposed only when released', () => {
    const { cache, put } = setup(1);
    const a = new Handle();
    const lease = cache.insert('a', a);
    put('b');
    assert.equal(cache.has('a'), false, 'evicted beyond maxEntries although leased');
    assert.equal(a.disposed, 0, 'not disposed while leased');
    lease.release();
    assert.equal(a.disposed, 1);
    assert.equal(cache.stats().evictions, 1);
  });
});
