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
    const series: Array<[name: string, type: 'counter' | 'gauge', help: string, value: number]> = [
      ['jamba_prompt_tokens_total', 'counter', 'Prompt tokens processed.', this.promptTokens],
      ['jamba_completion_tokens_total', 'counter', 'Tokens generated.', this.completionTokens],
      ['jamba_requests_active', 'gauge', 'Generations running.', gauges.active],
      ['jamba_queue_depth', 'gauge', 'Generations waiting for a slot.', gauges.queued],
      ['jamba_forward_passes_total', 'counter', 'Batched forward passes run.', gauges.passes],
      ['jamba_prefix_cache_hits_total', 'counter', 'Prompts that reused a cached prefix state.', gauges.prefixHits],
      ['process_resident_memory_bytes', 'gauge', 'Resident memory.', process.memoryUsage().rss],
    ];
    const out = [
      '# HELP jamba_requests_total Requests by endpoint and HTTP status.',
      '# TYPE jamba_requests_total counter',
      ...[...this.requests].map(([k, v]) => `jamba_requests_total{${k}} ${v}`),
      ...series.flatMap(([name, type, help, value]) => [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`]),
      this.latency.render(),
      this.ttft.render(),
    ];
    return `${out.join('\n')}\n`;
  }
}
