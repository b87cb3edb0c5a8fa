/** What libtorch was built with and can see (CUDA devices, threads); libtorch's own warnings. */
import { addon, type HeapStats, type NativeWarning } from './native.js';

export type { HeapStats, NativeWarning };

export function runtimeInfo() {
  return addon().runtimeInfo();
}

/** The native heap (glibc's mallinfo2): bytes in use and bytes free but held; null off glibc. */
export function heapStats(): HeapStats | null {
  return addon().heapStats();
}

export type NativeWarningListener = (warning: NativeWarning) => void;

const listeners = new Set<NativeWarningListener>();

function deliver(warnings: NativeWarning[], dropped: number): void {
  const all = dropped > 0 ? [...warnings, { message: `${dropped} more distinct libtorch warnings were dropped (too many at once)`, source: 'sam3', deprecation: false, count: dropped }] : warnings;
  for (const w of all) {
    for (const listener of listeners) {
      try {
        listener(w);
      } catch {
        // One listener's failure must not hide the warning from the others.
      }
    }
  }
}

/**
 * Receives libtorch's own warnings (TORCH_WARN from the ops it runs) on the JS thread instead of
 * stderr: raised on the JS thread or an engine thread, queued natively and delivered in batches,
 * identical ones coalesced into `count`. Returns the function that unsubscribes; with no listener
 * left, warnings go to stderr again. Loads the addon.
 */
export function onNativeWarning(listener: NativeWarningListener): () => void {
  if (listeners.size === 0) addon().setWarningListener(deliver);
  listeners.add(listener);
  return () => {
    if (!listeners.delete(listener)) return;
    if (listeners.size === 0) addon().setWarningListener(null);
  };
}

/**
 * Hands the native heap's free pages back to the system (glibc malloc_trim on a libuv worker) when
 * it holds at least minFreeBytes free; resolves what it found. Tensors of mixed lifetimes leave
 * glibc's heap fragmented, and the free pages stay resident until trimmed.
 */
export function trimNativeHeap(minFreeBytes = 0): Promise<{ trimmed: boolean; freeBytes: number }> {
  return addon().trimNativeHeap(minFreeBytes);
}

/**
 * Trims the native heap every intervalMs while glibc holds at least minFreeBytes free (an unref'd
 * timer: it never keeps the process alive). Returns a function that stops it.
 */
export function keepNativeHeapTrimmed(options: { intervalMs?: number; minFreeBytes?: number } = {}): () => void {
  const intervalMs = options.intervalMs ?? 5000;
  const minFreeBytes = options.minFreeBytes ?? 64 * 2 ** 20;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    trimNativeHeap(minFreeBytes)
      .catch(() => undefined)
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
