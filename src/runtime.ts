/** What libtorch was built with and can see (CUDA devices, threads). */
import { addon } from './native.js';

export function runtimeInfo() {
  return addon().runtimeInfo();
}
