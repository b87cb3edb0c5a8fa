/**
 * Which frames a propagation visits, in which order and direction: the order of transformers'
 * propagate_in_video_iterator for Sam3TrackerVideoModel (box/point objects) and for Sam3VideoModel
 * (concepts), and a generator wrapper that releases the session even when never iterated.
 */
import { invalid } from '../errors.js';
import { checkCount, checkFrameIndex } from '../prompts.js';

export type Direction = 'forward' | 'backward' | 'both';

/** One pass of a propagation: frames in order, all in one direction. */
export interface PropagationRun {
  frames: number[];
  reverse: boolean;
}

export interface PlanOptions {
  direction?: Direction;
  /** Default: `defaultStart`. */
  startFrameIndex?: number;
  /** Frames to track after the start frame (null/undefined: to the end). */
  maxFrames?: number | null;
}

/**
 * The runs of a propagation. Forward: start..start+max. Backward: start..start-max (the start
 * frame included). Both: forward, then backward; `concepts` (Sam3VideoModel, where every visit
 * of a frame detects and tracks again) starts the backward run one frame before the start,
 * while box/point tracking runs the start frame again (its result is reported once).
 */
export function propagationRuns(options: PlanOptions, totalFrames: number, defaultStart: number, concepts: boolean): PropagationRun[] {
  const direction = options.direction ?? 'forward';
  if (direction !== 'forward' && direction !== 'backward' && direction !== 'both') {
    throw invalid(`direction must be forward, backward or both, got ${JSON.stringify(direction)}`);
  }
  const n = totalFrames;
  const start = options.startFrameIndex === undefined || options.startFrameIndex === null ? defaultStart : checkFrameIndex(options.startFrameIndex, n, 'startFrameIndex');
  const max = options.maxFrames === undefined || options.maxFrames === null ? n : checkCount(options.maxFrames, 'maxFrames');
  const runs: PropagationRun[] = [];
  if (direction !== 'backward') {
    const frames: number[] = [];
    for (let f = start; f <= Math.min(start + max, n - 1); f++) frames.push(f);
    runs.push({ frames, reverse: false });
  }
  if (direction !== 'forward') {
    // Box/point tracking (transformers' Sam3TrackerVideoModel order) runs no reverse pass from frame 0.
    const from = concepts && direction === 'both' ? start - 1 : start;
    const frames: number[] = [];
    if (concepts || start > 0) for (let f = from; f >= Math.max(start - max, 0); f--) frames.push(f);
    if (frames.length > 0) runs.push({ frames, reverse: true });
  }
  return runs;
}

/**
 * A generator that has not started does not run its finally block on return(): this wrapper makes
 * return() / throw() before the first next() call `release` itself, so an abandoned, never-iterated
 * propagation does not leave the session busy.
 */
export function releasedIfUnstarted<T>(inner: AsyncGenerator<T>, release: () => void): AsyncGenerator<T> {
  let started = false;
  const first = () => {
    if (started) return false;
    started = true;
    return true;
  };
  const gen: AsyncGenerator<T> = {
    next: (...args: [] | [unknown]) => {
      started = true;
      return inner.next(...args);
    },
    return: (value) => {
      if (first()) release();
      return inner.return(value);
    },
    throw: (err) => {
      if (first()) release();
      return inner.throw(err);
    },
    [Symbol.asyncIterator]: () => gen,
  } as AsyncGenerator<T>;
  return gen;
}
