/**
 * Seeded randomness for the reliability suite (mulberry32): the same seed gives the same sequence of
 * cases per worker, so a failure is reproduced by its seed and the case's name.
 */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }

  /** Printable junk, unicode included. */
  text(n: number): string {
    const alphabet = ['a', 'Z', '0', ' ', '/', '\\', '"', "'", '<', '>', '&', '%', '{', '}', '[', ']', '\u0000', '\n', 'é', '漢', '\u202e', '😀', '\ud800', '.', '..'];
    let s = '';
    for (let i = 0; i < n; i++) s += this.pick(alphabet);
    return s;
  }
}

/** Values that break naive handlers: wrong types, huge and odd numbers, odd strings. */
export function junkValue(rng: Rng): unknown {
  return rng.pick<() => unknown>([
    () => null,
    () => true,
    () => rng.int(-5, 5),
    () => -1,
    () => 1e308,
    () => -1e308,
    () => 2 ** 53 + 1,
    () => Number.MAX_SAFE_INTEGER,
    () => 2 ** 31,
    () => 0.1 + 0.2,
    () => 1e-320,
    () => '',
    () => ' ',
    () => rng.text(rng.int(1, 40)),
    () => 'x'.repeat(rng.int(1000, 70_000)),
    () => '1',
    () => 'NaN',
    () => [],
    () => [junkValue(rng)],
    () => Array.from({ length: rng.int(50, 2000) }, () => rng.int(0, 9)),
    () => ({}),
    () => ({ type: rng.text(3) }),
    () => [[[[[[[[1]]]]]]]],
  ])();
}

/** JSON text with literals JSON.stringify never writes (NaN, Infinity, 1e999, trailing commas, comments). */
export function invalidJsonNumberText(rng: Rng, field: string): string {
  const literal = rng.pick(['NaN', 'Infinity', '-Infinity', '1e999', '-1e999', '0x10', '01', '1.', '.5', '+1', '1_000', 'undefined']);
  return `{"${field}": ${literal}}`;
}
