/**
 * Quantized loading: which weights are quantized and how, the option parser the CLI and bench
 * share, and the error metric the tests and benchmarks report.
 *
 * Where the work happens: `Qwen2VLModel.load(dir, { quant: "q4" })` plans the decoder layers'
 * matrices and lm_head as q4 (weights.ts `PlanOptions.quant`); while loading, the stored bytes
 * (bf16 or f16, unconverted) are read into the loader's staging slots, written to the GPU and
 * quantized there by a kernel (kernels/linear_q.ts `quantizeRows`), so quantizing adds no CPU pass
 * over the weights (an F32-stored tensor goes through f16 on the CPU first). The embedding (a
 * gather of one row per token) and the vision tower (compute-bound) keep the float dtype.
 *
 * Format: groups of 32 consecutive elements of a row share one f16 scale d = max|v| / qmax, codes
 * round(v / d): q8 (qmax 127) 8.5 bits per weight, q4 (qmax 7) 4.5 bits per weight.
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import type { QuantDType } from "../gpu/tensor.ts";

/** The quantized weight types. */
export const QUANT_TYPES: readonly QuantDType[] = ["q8", "q4"];

/**
 * qvq's own quantization as each way in names it, for error messages that point to it: the
 * load option `quant`, the CLI's `--quant` and the server's `QVQ_QUANT`.
 */
export const QUANT_OPTION =
  `quant: "q8" or "q4" (Pipeline.load's option; CLI --quant q8|q4; server QVQ_QUANT=q8|q4)`;

/** Bits stored per weight, the f16 scale of each 32-group included. */
export const BITS_PER_WEIGHT: Readonly<Record<QuantDType, number>> = { q8: 8.5, q4: 4.5 };

/**
 * Parses a `--quant` value: "f16"/"f32"/"none"/undefined mean no quantization.
 * @throws InvalidInputError for anything else
 */
export function parseQuant(value: string | undefined): QuantDType | undefined {
  if (meansNone(value)) return undefined;
  if ((QUANT_TYPES as readonly string[]).includes(value)) return value as QuantDType;
  throw new InvalidInputError(
    `quantization "${value}" is not supported; use one of ${QUANT_TYPES.join(", ")} (or f16)`,
  );
}

/**
 * The load options' matrix dtype, checked: "f32" or "f16" (q8 / q4 are `quant`'s, which the
 * decoder takes; the vision tower and the embeddings stay in this dtype).
 * @throws InvalidInputError naming the value and the choices
 */
export function checkWeightDType(value: unknown): "f32" | "f16" {
  if (value === "f32" || value === "f16") return value;
  throw new InvalidInputError(
    `dtype must be "f32" or "f16", got ${JSON.stringify(value)}` +
      (value === "q8" || value === "q4" ? `; for ${value} weights pass quant: "${value}"` : ""),
  );
}

/** The load options' `quant`, checked: "q8", "q4" or unset. @throws InvalidInputError */
export function checkQuant(value: unknown): "q8" | "q4" | undefined {
  if (value === undefined || value === "q8" || value === "q4") return value;
  throw new InvalidInputError(
    `quant must be "q8", "q4" or unset (the decoder in dtype), got ${JSON.stringify(value)}`,
  );
}

/**
 * Checks a `visionQuant` option: undefined or "q8". q4 is refused: its int8 GEMM is the same
 * path, but what 4-bit weights do to the image embeddings was never measured, and q4 moved the
 * decoder's logits 17× as far as q8 (tiny model: max |Δ| 8.08 against 0.485).
 * @throws InvalidInputError for anything else
 */
export function checkVisionQuant(value: unknown): "q8" | undefined {
  if (value === undefined || value === "q8") return value;
  if (value === "q4") {
    throw new InvalidInputError(
      'visionQuant "q4" is not supported: 4-bit vision weights were never measured against the ' +
        'float tower (q8 was); use "q8" or leave it unset (the vision tower in f16 / f32)',
    );
  }
  throw new InvalidInputError(
    `visionQuant must be "q8" or unset (the vision tower in f16 / f32), got ${
      JSON.stringify(value)
    }`,
  );
}

/**
 * Parses a `--vision-quant` value (weights.ts PlanOptions.visionQuant): "q8" quantizes the vision
 * tower's matrices; "f16"/"f32"/"none"/undefined mean none.
 * @throws InvalidInputError for anything else (q4: why it is refused)
 */
export function parseVisionQuant(value: string | undefined): "q8" | undefined {
  return meansNone(value) ? undefined : checkVisionQuant(value);
}

/** Whether a quantization option's value asks for none: unset, "none", "f16" or "f32". */
function meansNone(value: string | undefined): value is undefined | "none" | "f16" | "f32" {
  return value === undefined || value === "none" || value === "f16" || value === "f32";
}

/** How far quantized logits are from the float model's. */
export interface LogitError {
  /** max |Δ logit| over all positions and the vocabulary. */
  maxAbs: number;
  /** Root mean square of Δ logit. */
  rms: number;
  /** max |logit| of the reference, for scale. */
  refMax: number;
  /** Positions whose argmax (greedy id) agrees. */
  argmaxAgree: number;
  /** Positions compared. */
  positions: number;
}

/**
 * Compares (positions, vocab) logits of a quantized model with the float reference.
 * @param ref (positions · vocab) f32
 * @param got (positions · vocab) f32
 */
export function logitError(ref: Float32Array, got: Float32Array, vocab: number): LogitError {
  if (ref.length !== got.length || ref.length % vocab !== 0) {
    throw new InvalidInputError(
      `logitError: ${ref.length} and ${got.length} logits are not the same whole rows of ${vocab}`,
    );
  }
  const positions = ref.length / vocab;
  let maxAbs = 0, sq = 0, refMax = 0, argmaxAgree = 0;
  for (let p = 0; p < positions; p++) {
    let a = -Infinity, ai = 0, b = -Infinity, bi = 0;
    for (let v = p * vocab; v < (p + 1) * vocab; v++) {
      const d = got[v] - ref[v];
      maxAbs = Math.max(maxAbs, Math.abs(d));
      sq += d * d;
      refMax = Math.max(refMax, Math.abs(ref[v]));
      if (ref[v] > a) [a, ai] = [ref[v], v];
      if (got[v] > b) [b, bi] = [got[v], v];
    }
    if (ai === bi) argmaxAgree++;
  }
  return { maxAbs, rms: Math.sqrt(sq / ref.length), refMax, argmaxAgree, positions };
}
