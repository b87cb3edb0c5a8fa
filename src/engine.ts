/**
 * Engines: one dedicated native inference thread per device, shared by the models loaded on it.
 * All libtorch work of a device runs on its engine's thread, never on the JS thread or libuv's pool.
 */
import { fromNative } from './errors.js';
import { type NativeEngine, type NativeEngineStats, addon } from './native.js';

export type EngineStats = NativeEngineStats;

export class Engine {
  /** @internal */
  constructor(/** @internal */ readonly native: NativeEngine) {}

  get device(): string {
    return this.native.device;
  }

  /** Queue depth and counters of the engine's thread. */
  stats(): EngineStats {
    return this.native.stats();
  }

  /** Stops the thread once its queued jobs are done; later jobs fail with ERR_SAM3_ENGINE_CLOSED. */
  close(): void {
    this.native.close();
  }
}

/** An engine for 'cpu', 'cuda' or 'cuda:N' with `threads` libtorch threads (default: libtorch's). */
export function createEngine(device: string, threads?: number): Engine {
  try {
    return new Engine(new (addon().Engine)(device, threads));
  } catch (err) {
    throw fromNative(err);
  }
}

/** headBatch and encodeBatch when not given: 8 on CUDA, where one item leaves the device idle; 1 on a CPU. */
export function deviceBatchDefault(device: string): number {
  return device.startsWith('cuda') ? 8 : 1;
}
