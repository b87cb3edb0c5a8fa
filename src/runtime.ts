/** What libtorch was built with and can see (CUDA devices, threads). */
import { addon, type HeapStats } from './native.js';

export type { HeapStats };

export function runtimeInfo() {
  return addon().runtimeInfo();
}

/** The native heap (glibc's mallinfo2): bytes in use and bytes free but held; null off glibc. */
export function heapStats(): HeapStats | null {
  return addon().heapStats();
}
