/**
 * Prometheus metrics (prom-client): one registry per app, so several apps can live in one process
 * (tests). The app owns the registry and the HTTP metrics; each part of the server adds its own
 * metrics to the same registry the same way: a class that takes the registry and, for gauges read
 * at scrape time, attach()es to what it reads (devices/metrics.ts, video/metrics.ts).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import { heapStats } from '../../index.js';

export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.httpRequests = new Counter({
      name: 'sam3_http_requests_total',
      help: 'HTTP requests by route template and status code',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'sam3_http_request_duration_seconds',
      help: 'HTTP request latency by route template and status code',
      labelNames: ['method', 'route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    // The native heap as glibc sees it, read at scrape time: RSS well above in_use is fragmentation
    // (free pages not yet trimmed), in_use growing is a leak.
    new Gauge({
      name: 'sam3_native_heap_bytes',
      help: "The addon's C heap (glibc mallinfo2): bytes in use, and bytes free but still held",
      labelNames: ['state'],
      registers,
      collect() {
        const h = heapStats();
        if (!h) return;
        this.set({ state: 'in_use' }, h.inUseBytes);
        this.set({ state: 'free' }, h.freeBytes);
      },
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
