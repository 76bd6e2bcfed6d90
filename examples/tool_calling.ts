/**
 * Tool calling with the official `openai` client: the model is made to call a tool (its arguments
 * held to the tool's JSON schema), the tool runs here, and its result goes back for the answer.
 * Start the server with `deno task serve`, then
 *
 *   deno run -A examples/tool_calling.ts [base-url]
 *
 * (default http://localhost:8000/v1; QVQ_API_KEY if the server needs one). `tool_choice:
 * "required"` holds the answer to calls of the tools (their arguments fit their schemas), so the
 * tiny test model, whose weights are random, calls one too; with a real model "auto" (the
 * default) lets it choose, in Qwen's own tool-call format.
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

const tools: OpenAI.Chat.ChatCompletionTool[] = [{
  type: "function",
  function: {
    name: "sea_state",
    description: "The sea's state at a harbour",
    parameters: {
      type: "object",
      properties: {
        harbour: { enum: ["Bergen", "Brest", "Cádiz"] },
        unit: { enum: ["metres", "feet"] },
      },
      required: ["harbour", "unit"],
    },
  },
}];
/** The tool itself. */
function seaState({ harbour, unit }: { harbour: string; unit: string }): string {
  const metres = { Bergen: 1.5, Brest: 2.5, "Cádiz": 0.5 }[harbour] ?? 0;
  return JSON.stringify({ harbour, waves: unit === "feet" ? metres * 3.28 : metres, unit });
}

const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
  { role: "system", content: "Call sea_state to learn how high the waves are at a harbour." },
  { role: "user", content: "Are the waves high in Brest today?" },
];
const first = await client.chat.completions.create({
  model: model.id,
  messages,
  tools,
  tool_choice: "required",
  parallel_tool_calls: false,
  temperature: 0,
  max_tokens: 40,
});
const call = first.choices[0].message
  .tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
console.log(`call: ${call.function.name} ${call.function.arguments}`);

// The result goes back as a tool message after the assistant's call; "none": a text answer now.
const result = seaState(JSON.parse(call.function.arguments));
console.log(`result: ${result}`);
const answer = await client.chat.completions.create({
  model: model.id,
  messages: [
    ...messages,
    first.choices[0].message,
    { role: "tool", tool_call_id: call.id, content: result },
  ],
  tools,
  tool_choice: "none",
  temperature: 0,
  max_tokens: 24,
});
console.log(`answer: ${JSON.stringify(answer.choices[0].message.content)}`);
