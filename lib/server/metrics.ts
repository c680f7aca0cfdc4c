/**
 * Prometheus metrics of the server, in the text exposition format: the project's own series, and
 * the same measurements under vLLM's names with a `model_name` label, which dashboards and LLM
 * gateways (the Kubernetes Gateway API Inference Extension, for one) scrape.
 */

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** A label value as the exposition format quotes it. */
const quote = (v: string) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;

class Histogram {
  private counts = new Array<number>(BUCKETS.length).fill(0);
  private sum = 0;
  private n = 0;
  observe(v: number): void {
    this.sum += v;
    this.n++;
    BUCKETS.forEach((b, i) => {
      if (v <= b) this.counts[i]!++;
    });
  }
  render(name: string, help: string, labels: string): string {
    const lb = (extra: string) => `{${[labels, extra].filter(Boolean).join(',')}}`;
    const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    BUCKETS.forEach((b, i) => lines.push(`${name}_bucket${lb(`le="${b}"`)} ${this.counts[i]}`));
    const plain = labels ? `{${labels}}` : '';
    lines.push(`${name}_bucket${lb('le="+Inf"')} ${this.n}`, `${name}_sum${plain} ${this.sum}`, `${name}_count${plain} ${this.n}`);
    return lines.join('\n');
  }
}

/** What the server knows at scrape time. */
export interface Gauges {
  modelName: string;
  /** Generations running, and waiting for a slot. */
  running: number;
  waiting: number;
  passes: number;
  prefixHits: number;
  /** Fraction of the sequence state slots in use: Jamba's state pool is its KV cache. */
  stateUsage: number;
}

export class Metrics {
  private requests = new Map<string, number>();
  private finished = new Map<string, number>();
  promptTokens = 0;
  cachedPromptTokens = 0;
  completionTokens = 0;
  readonly latency = new Histogram();
  readonly ttft = new Histogram();

  request(endpoint: string, status: number): void {
    const key = `endpoint=${quote(endpoint)},status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  /** A choice that finished with this OpenAI finish reason. */
  success(finishReason: string): void {
    this.finished.set(finishReason, (this.finished.get(finishReason) ?? 0) + 1);
  }

  render(g: Gauges): string {
    const model = `model_name=${quote(g.modelName)}`;
    const own: Array<[name: string, type: 'counter' | 'gauge', help: string, value: number]> = [
      ['jamba_prompt_tokens_total', 'counter', 'Prompt tokens processed.', this.promptTokens],
      ['jamba_prompt_tokens_cached_total', 'counter', 'Prompt tokens whose state came from the prefix cache.', this.cachedPromptTokens],
      ['jamba_completion_tokens_total', 'counter', 'Tokens generated.', this.completionTokens],
      ['jamba_requests_active', 'gauge', 'Generations running.', g.running],
      ['jamba_queue_depth', 'gauge', 'Generations waiting for a slot.', g.waiting],
      ['jamba_forward_passes_total', 'counter', 'Batched forward passes run.', g.passes],
      ['jamba_prefix_cache_hits_total', 'counter', 'Prompts that reused a cached prefix state.', g.prefixHits],
      ['process_resident_memory_bytes', 'gauge', 'Resident memory.', process.memoryUsage().rss],
    ];
    const vllm: Array<[name: string, type: 'counter' | 'gauge', help: string, value: number]> = [
      ['vllm:num_requests_running', 'gauge', 'Number of requests in model execution batches.', g.running],
      ['vllm:num_requests_waiting', 'gauge', 'Number of requests waiting to be processed.', g.waiting],
      ['vllm:kv_cache_usage_perc', 'gauge', 'Fraction of sequence state slots in use (1 = all). Jamba keeps its Mamba states and KV cache per sequence slot.', g.stateUsage],
      ['vllm:prompt_tokens_total', 'counter', 'Number of prefill tokens processed.', this.promptTokens],
      ['vllm:generation_tokens_total', 'counter', 'Number of generation tokens processed.', this.completionTokens],
    ];
    const out = [
      '# HELP jamba_requests_total Requests by endpoint and HTTP status.',
      '# TYPE jamba_requests_total counter',
      ...[...this.requests].map(([k, v]) => `jamba_requests_total{${k}} ${v}`),
      ...own.flatMap(([name, type, help, value]) => [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`]),
      this.latency.render('jamba_request_duration_seconds', 'Time from request to last byte.', ''),
      this.ttft.render('jamba_time_to_first_token_seconds', 'Time from request to the first generated text.', ''),
      ...vllm.flatMap(([name, type, help, value]) => [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name}{${model}} ${value}`]),
      '# HELP vllm:request_success_total Count of successfully processed requests.',
      '# TYPE vllm:request_success_total counter',
      ...[...this.finished].map(([reason, v]) => `vllm:request_success_total{${model},finished_reason=${quote(reason)}} ${v}`),
      this.ttft.render('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', model),
      this.latency.render('vllm:e2e_request_latency_seconds', 'Histogram of end to end request latency in seconds.', model),
    ];
    return `${out.join('\n')}\n`;
  }
}
