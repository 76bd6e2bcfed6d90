/**
 * `qvq preprocess`: images → the `pixel_values` (F32) and `image_grid_thw` (I32) transformers'
 * Qwen2VLImageProcessor gives, saved as safetensors. Needs only the image settings
 * (preprocessor_config.json, or transformers 5's processor_config.json).
 * @module
 */
import { patchCount, preprocessImages } from "../image.ts";
import { loadProcessorConfigs } from "../generate/processor.ts";
import { openModelSource } from "../model_files.ts";
import { writeSafetensors } from "../safetensors.ts";
import {
  type Io,
  parseCommand,
  readImageFile,
  requireOutPath,
  requireModelDir,
  stringList,
  UsageError,
  writeOutFile,
} from "./_args.ts";

const USAGE = `usage: qvq preprocess --model <dir|url> --image <file>... --out <file.safetensors>

Runs Qwen2-VL's image processor (the model's preprocessor_config.json) on the images, in order,
and writes pixel_values (F32, (patches, 1176)) and image_grid_thw (I32, (images, 3)).
`;

/** `qvq preprocess …`: returns the exit code. */
export async function preprocessCommand(args: string[], io: Io): Promise<number> {
  const v = parseCommand(args, {
    model: { type: "string" },
    image: { type: "string", multiple: true },
    out: { type: "string" },
    help: { type: "boolean", short: "h" },
  }, USAGE);
  if (v.help) {
    await io.out(USAGE);
    return 0;
  }
  const src = openModelSource(await requireModelDir(v, USAGE));
  const out = await requireOutPath(v, "out", USAGE);
  const paths = stringList(v, "image");
  if (paths.length === 0) throw new UsageError("give at least one --image", USAGE);
  const { image: config } = await loadProcessorConfigs(src);
  const images = (await Promise.all(paths.map((p) => readImageFile(p)))).map((i) => i.bytes);
  const { pixelValues, gridThw } = await preprocessImages(images, config);
  const patches = patchCount(gridThw);
  await writeOutFile(
    out,
    writeSafetensors({
      pixel_values: {
        dtype: "F32",
        shape: [patches, pixelValues.length / patches],
        data: pixelValues,
      },
      image_grid_thw: {
        dtype: "I32",
        shape: [gridThw.length, 3],
        data: Int32Array.from(gridThw.flat()),
      },
    }),
  );
  await io.err(`wrote ${out}: ${paths.length} image(s), ${patches} patches\n`);
  return 0;
}
