/**
 * Dynamic batching of image-encode jobs for one engine. Jobs that arrive while the engine is busy,
 * or within BATCH_WAIT_MS of each other, share ONE vision-encoder pass (up to MAX_BATCH_SIZE
 * images): on a GPU a batch of 8 costs far less than 8 single passes. The window is only waited
 * while companions are known to be on their way (admitted requests still decoding): a lone
 * request on an idle engine goes straight to the encoder.
 *
 * Admission is separate from batching: a request reserves a slot on a worker (see Worker.admit)
 * before it even decodes its image, so the number of decoded images held in memory is bounded by
 * MAX_QUEUE_SIZE per device, whatever the load.
 */
import type { ImageFeatures, RgbImage } from '../../index.js';

export interface BatchReport {
  size: number;
  /** Time the batch's encoder pass took. */
  seconds: number;
  /** How long each job waited from submit until its batch started. */
  waits: number[];
  failed: boolean;
}

export interface BatcherOptions {
  maxBatchSize: number;
  batchWaitMs: number;
  /**
   * Images announced for this batcher and not submitted yet (admitted requests still decoding).
   * When given, a job that finds the engine idle and no companion on its way runs at once instead
   * of waiting BATCH_WAIT_MS for companions that are not coming: a lone request pays no batching
   * window. Without it, every batch waits the window.
   */
  incoming?: () => number;
  onBatch?: (report: BatchReport) => void;
}

interface Job {
  image: RgbImage;
  submitted: number;
  resolve: (features: ImageFeatures) => void;
  reject: (err: unknown) => void;
}

export class EncodeBatcher {
  private queue: Job[] = [];
  private runningSize = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly encode: (images: RgbImage[]) => Promise<ImageFeatures[]>,
    private readonly options: BatcherOptions,
  ) {}

  /** Jobs waiting for an encoder pass. */
  get depth(): number {
    return this.queue.length;
  }

  /** Images in the encoder pass now running. */
  get running(): number {
    return this.runningSize;
  }

  submit(image: RgbImage): Promise<ImageFeatures> {
    return new Promise<ImageFeatures>((resolve, reject) => {
      this.queue.push({ image, submitted: performance.now(), resolve, reject });
      this.schedule();
    });
  }

  /** Re-checks the wait, e.g. when an announced image will not come after all (its decode failed). */
  poke(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.runningSize > 0 || this.queue.length === 0) return; // the running batch's end reschedules
    const nobodyComing = this.options.incoming !== undefined && this.options.incoming() <= 0;
    if (this.queue.length >= this.options.maxBatchSize || this.options.batchWaitMs <= 0 || nobodyComing) {
      this.flush();
      return;
    }
    // Wait a moment for companions, but only from the first job's arrival, so one job never waits
    // more than BATCH_WAIT_MS on an idle engine.
    this.timer ??= setTimeout(() => this.flush(), this.options.batchWaitMs);
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.runningSize > 0 || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.options.maxBatchSize);
    this.runningSize = batch.length;
    void this.run(batch).finally(() => {
      this.runningSize = 0;
      // Jobs that queued up during the pass go next, at once: they have waited already.
      if (this.queue.length > 0) this.flush();
    });
  }

  private async run(batch: Job[]): Promise<void> {
    const start = performance.now();
    const waits = batch.map((j) => (start - j.submitted) / 1000);
    try {
      const features = await this.encode(batch.map((j) => j.image));
      this.report(batch.length, start, waits, false);
      batch.forEach((job, i) => job.resolve(features[i]!));
    } catch (err) {
      this.report(batch.length, start, waits, true);
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // One image must not fail its companions: retry each alone so the error lands where it belongs.
      for (const job of batch) {
        try {
          const [f] = await this.encode([job.image]);
          job.resolve(f!);
        } catch (e) {
          job.reject(e);
        }
      }
    }
  }

  private report(size: number, start: number, waits: number[], failed: boolean): void {
    try {
      this.options.onBatch?.({ size, seconds: (performance.now() - start) / 1000, waits, failed });
    } catch {
      // metrics must never break inference
    }
  }
}
