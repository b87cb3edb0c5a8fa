/**
 * Prometheus metrics of the video sessions, in the app's registry. Labels stay bounded: per device
 * (the DEVICES list) and per outcome, never per session.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** What the gauges read at scrape time. */
export interface SessionCensus {
  /** Per device label: open sessions and the memory they hold. */
  perDevice(): Map<string, { sessions: number; memoryBytes: number }>;
}

export type CloseReason = 'deleted' | 'expired' | 'shutdown';
export type PropagationOutcome = 'completed' | 'cancelled' | 'failed';

const FRAME_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class VideoMetrics {
  readonly opened: Counter;
  readonly closed: Counter<'reason'>;
  readonly frames: Counter<'device'>;
  readonly frameSeconds: Histogram<'device'>;
  readonly propagations: Counter<'device' | 'outcome'>;
  private readonly fps: Gauge<'device'>;
  private census: SessionCensus | undefined;

  constructor(registry: Registry) {
    const registers = [registry];
    const census = () => this.census?.perDevice() ?? new Map<string, { sessions: number; memoryBytes: number }>();
    new Gauge({
      name: 'sam3_video_sessions_active',
      help: 'Open video sessions, per device',
      labelNames: ['device'],
      registers,
      collect: function () {
        this.reset();
        for (const [device, c] of census()) this.set({ device }, c.sessions);
      },
    });
    new Gauge({
      name: 'sam3_video_session_memory_bytes',
      help: 'Memory held by the open video sessions (tracker state, cached features and frames), summed per device',
      labelNames: ['device'],
      registers,
      collect: function () {
        this.reset();
        for (const [device, c] of census()) this.set({ device }, c.memoryBytes);
      },
    });
    this.opened = new Counter({ name: 'sam3_video_sessions_opened_total', help: 'Video sessions opened', registers });
    this.closed = new Counter({
      name: 'sam3_video_sessions_closed_total',
      help: 'Video sessions closed: deleted by the client, expired after SESSION_IDLE_TIMEOUT_SECONDS, or closed at shutdown',
      labelNames: ['reason'],
      registers,
    });
    this.frames = new Counter({ name: 'sam3_video_frames_propagated_total', help: 'Frames tracked by propagation (HTTP and WebSocket)', labelNames: ['device'], registers });
    this.frameSeconds = new Histogram({
      name: 'sam3_video_propagate_frame_seconds',
      help: 'Time to produce one propagated frame (decode, tracker, masks), per device',
      labelNames: ['device'],
      buckets: FRAME_BUCKETS,
      registers,
    });
    this.fps = new Gauge({ name: 'sam3_video_propagation_fps', help: 'Frames per second of the last propagation that finished, per device', labelNames: ['device'], registers });
    this.propagations = new Counter({
      name: 'sam3_video_propagations_total',
      help: 'Propagation runs by outcome: completed, cancelled (client gone, cancel message, session closed) or failed',
      labelNames: ['device', 'outcome'],
      registers,
    });
  }

  attach(census: SessionCensus): void {
    this.census = census;
  }

  onFrame(device: string, seconds: number): void {
    this.frames.inc({ device });
    this.frameSeconds.observe({ device }, seconds);
  }

  onPropagation(device: string, outcome: PropagationOutcome, frames: number, seconds: number): void {
    this.propagations.inc({ device, outcome });
    if (frames > 0 && seconds > 0) this.fps.set({ device }, frames / seconds);
  }
}
