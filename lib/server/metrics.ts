/** Prometheus metrics of the server, in the text exposition format. */

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

class Histogram {
  private counts = new Array<number>(BUCKETS.length).fill(0);
  private sum = 0;
  private n = 0;
  constructor(readonly name: string, readonly help: string) {}
  observe(v: number): void {
    this.sum += v;
    this.n++;
    BUCKETS.forEach((b, i) => {
      if (v <= b) this.counts[i]!++;
    });
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    BUCKETS.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.n}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.n}`);
    return lines.join('\n');
  }
}

export class Metrics {
  private requests = new Map<string, number>();
  promptTokens = 0;
  completionTokens = 0;
  readonly latency = new Histogram('jamba_request_duration_seconds', 'Time from request to last byte.');
  readonly ttft = new Histogram('jamba_time_to_first_token_seconds', 'Time from request to the first generated text.');

  request(endpoint: string, status: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  render(gauges: { active: number; queued: number; passes: number; prefixHits: number }): string {
    const mem = process.memoryUsage();
    const out = [
      '# HELP jamba_requests_total Requests by endpoint and HTTP status.',
      '# TYPE jamba_requests_total counter',
      ...[...this.requests].map(([k, v]) => `jamba_requests_total{${k}} ${v}`),
      '# HELP jamba_prompt_tokens_total Prompt tokens processed.',
      '# TYPE jamba_prompt_tokens_total counter',
      `jamba_prompt_tokens_total ${this.promptTokens}`,
      '# HELP jamba_completion_tokens_total Tokens generated.',
      '# TYPE jamba_completion_tokens_total counter',
      `jamba_completion_tokens_total ${this.completionTokens}`,
      '# HELP jamba_requests_active Generations running.',
      '# TYPE jamba_requests_active gauge',
      `jamba_requests_active ${gauges.active}`,
      '# HELP jamba_queue_depth Generations waiting for a slot.',
      '# TYPE jamba_queue_depth gauge',
      `jamba_queue_depth ${gauges.queued}`,
      '# HELP jamba_forward_passes_total Batched forward passes run.',
      '# TYPE jamba_forward_passes_total counter',
      `jamba_forward_passes_total ${gauges.passes}`,
      '# HELP jamba_prefix_cache_hits_total Prompts that reused a cached prefix state.',
      '# TYPE jamba_prefix_cache_hits_total counter',
      `jamba_prefix_cache_hits_total ${gauges.prefixHits}`,
      '# HELP process_resident_memory_bytes Resident memory.',
      '# TYPE process_resident_memory_bytes gauge',
      `process_resident_memory_bytes ${mem.rss}`,
      this.latency.render(),
      this.ttft.render(),
    ];
    return `${out.join('\n')}\n`;
  }
}
