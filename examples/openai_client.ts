/**
 * The official `openai` client against the server: start it with `deno task serve`, then
 *
 *   deno run -A examples/openai_client.ts [base-url]
 *
 * (default http://localhost:8000/v1; QVQ_API_KEY if the server needs one).
 */
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: Deno.args[0] ?? "http://localhost:8000/v1",
  apiKey: Deno.env.get("QVQ_API_KEY") ?? "not-needed",
});
// The first request: where no server answers, say so (the client's own error is "Connection error.").
const models = await client.models.list().catch((e) => {
  if (!(e instanceof OpenAI.APIConnectionError)) throw e;
  console.error(
    `cannot reach ${client.baseURL}: is the server running? Start it with deno task serve`,
  );
  Deno.exit(1);
});
const [model] = models.data;
const png = await Deno.readFile(
  new URL("../tests/fixtures/tiny-qwen2vl/reference/case0_0.png", import.meta.url),
);
const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{
  role: "user",
  content: [
    { type: "image_url", image_url: { url: `data:image/png;base64,${png.toBase64()}` } },
    { type: "text", text: "What value should be filled in the blank space?" },
  ],
}];

const completion = await client.chat.completions.create({
  model: model.id,
  messages,
  max_tokens: 12,
  temperature: 0,
});
console.log(`${model.id}: ${JSON.stringify(completion.choices[0].message.content)}`);
console.log(`usage: ${JSON.stringify(completion.usage)}`);

const stream = await client.chat.completions.create({
  model: model.id,
  messages,
  max_tokens: 12,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  const text = chunk.choices[0]?.delta.content;
  if (text) await Deno.stdout.write(new TextEncoder().encode(text));
  if (chunk.usage) console.log(`\nstreamed ${chunk.usage.completion_tokens} tokens`);
}

// The same question through the Responses API (`client.responses`, what agent frameworks call).
const response = await client.responses.create({
  model: model.id,
  input: [{
    role: "user",
    content: [
      { type: "input_image", image_url: `data:image/png;base64,${png.toBase64()}`, detail: "auto" },
      { type: "input_text", text: "What value should be filled in the blank space?" },
    ],
  }],
  max_output_tokens: 12,
  temperature: 0,
});
console.log(`responses: ${JSON.stringify(response.output_text)} (${response.status})`);
