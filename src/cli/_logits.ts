/**
 * `qvq logits`: one forward pass over a one-turn prompt, saved as safetensors with the same
 * tensor names and dtypes as the transformers reference files (tests/fixtures/…/reference), so
 * any model can be compared with transformers offline.
 * @module
 */
import { writeSafetensors } from "../safetensors.ts";
import { patchCount } from "../image.ts";
import { type Io, parseCommand, requireOutPath, requireString, writeOutFile } from "./_args.ts";
import { loadPipeline, MODEL_OPTIONS, promptMessages } from "./_generate.ts";

const USAGE =
  `usage: qvq logits --model <dir|url|org/name> --prompt <text> [--image <file>]... [--video <frames>]... --out <file.safetensors>

Runs the prompt (one user turn with the model's chat template and default system prompt) through
the model once and writes input_ids (I32), image_grid_thw (I32), pixel_values (F32),
image_embeds (F32) and logits_last (F32).

options:
  --model <dir|url|id>   model directory, URL, or Hugging Face hub id
  --prompt <text>        the user's text
  --image <file>         an image; repeat for several
  --video <frames>       a video: its frame files, comma-separated, or a directory of them
                         (image_grid_thw and pixel_values then hold images, then videos)
  --system <text>        a system prompt instead of the template's default ("": none)
  --dtype <f16|f32>      weight dtype on the GPU (f32 for parity with transformers' fp32)
  --quant <q8|q4|f16>    quantize the decoder's matrices while loading (f16: none), to measure
                         what quantization does to the logits
  --vision-quant <q8|f16>  quantize the vision tower's matrices (int8 GEMMs; f16: none)
  --kv-cache-dtype <f32|f16>  the KV cache's type (default f32)
  --out <file>           where to write the safetensors file
`;

/** `qvq logits …`: returns the exit code. */
export async function logitsCommand(args: string[], io: Io): Promise<number> {
  const v = parseCommand(args, { ...MODEL_OPTIONS, out: { type: "string" } }, USAGE);
  if (v.help) {
    await io.out(USAGE);
    return 0;
  }
  requireString(v, "model", USAGE);
  const out = await requireOutPath(v, "out", USAGE);
  const messages = await promptMessages(v, USAGE);
  const pipeline = await loadPipeline(v, USAGE);
  try {
    const r = await pipeline.forward(messages);
    const { inputIds, pixelValues, gridThw } = r.prompt;
    const patches = patchCount(gridThw);
    const hidden = pipeline.model.config.text.hiddenSize;
    const bytes = writeSafetensors({
      input_ids: { dtype: "I32", shape: [inputIds.length], data: inputIds },
      image_grid_thw: {
        dtype: "I32",
        shape: [gridThw.length, 3],
        data: Int32Array.from(gridThw.flat()),
      },
      pixel_values: {
        dtype: "F32",
        shape: [patches, pipeline.model.config.vision.patchDim],
        data: pixelValues,
      },
      image_embeds: {
        dtype: "F32",
        shape: [r.imageEmbeds.length / hidden, hidden],
        data: r.imageEmbeds,
      },
      logits_last: { dtype: "F32", shape: [r.logitsLast.length], data: r.logitsLast },
    });
    await writeOutFile(out, bytes);
    await io.err(`wrote ${out}: ${inputIds.length} prompt tokens, ${gridThw.length} image(s)\n`);
    return 0;
  } finally {
    pipeline.dispose();
  }
}
