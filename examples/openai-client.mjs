// Talk to `jamba serve` with plain fetch, streaming: node examples/openai-client.mjs [URL]
const url = process.argv[2] ?? 'http://127.0.0.1:8080';
const res = await fetch(`${url}/v1/completions`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ prompt: 'ROMEO:\n', max_tokens: 64, temperature: 0.8, stream: true }),
});
const decoder = new TextDecoder();
let buffer = '';
for await (const chunk of res.body) {
  buffer += decoder.decode(chunk, { stream: true });
  let end;
  while ((end = buffer.indexOf('\n\n')) >= 0) {
    const event = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
    process.stdout.write(JSON.parse(event.slice(6)).choices[0]?.text ?? '');
  }
}
process.stdout.write('\n');
