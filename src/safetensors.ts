/**
 * Safetensors checkpoints: one file or a sharded set (`model.safetensors.index.json`), read tensor
 * by tensor from any {@link ModelSource}. Opening reads only the headers; each tensor's bytes are
 * read on demand, in row slices for huge tensors, and converted to f16 / f32 / i32 in WebAssembly
 * (round to nearest even). The header is validated in Rust (`wasm/crates/safetensors`), so a
 * malformed file is a ModelFileError naming the file and the tensor, never a wrong tensor.
 *
 * Also a writer: whole files in memory ({@link writeSafetensors}) or streamed, sharded sets of
 * any size ({@link writeShardedSafetensors}).
 *
 * @example
 * ```ts ignore
 * const ckpt = await SafetensorsCheckpoint.open(openModelSource("tests/fixtures/tiny-qwen2vl"));
 * const norm = await ckpt.readF32("model.norm.weight"); // (hidden) f32
 * const slices = { to: "f16", maxBytes: 64 << 20, reuse: true } as const;
 * for await (const c of ckpt.readChunks("model.embed_tokens.weight", slices)) {
 *   // c.data: (c.rows, hidden) f16 bits, valid until the next slice; writeBuffer copies it
 *   device.queue.writeBuffer(embed, c.rowStart * rowBytes, c.data);
 * }
 * ```
 * @module
 */
import { loadWasm, wasm } from "./_wasm.ts";
import { InvalidInputError, ModelFileError } from "./errors.ts";
import { checkFileName, MemoryModelSource, type ModelSource } from "./model_files.ts";

/** The dtypes qvq reads. */
export type DType = "BF16" | "F16" | "F32" | "I32" | "I64";

/** Every dtype the format defines; files holding the others open fine, reading them throws. */
export type StoredDType =
  | DType
  | "BOOL"
  | "U8"
  | "I8"
  | "F8_E5M2"
  | "F8_E4M3"
  | "I16"
  | "U16"
  | "U32"
  | "F64"
  | "U64";

/**
 * What a read converts to: f16 (as raw bits), f32, i32, or "raw": the stored bytes unchanged
 * (e.g. BF16 for a shader that unpacks it, the fastest way to a GPU).
 */
export type Target = "f16" | "f32" | "i32" | "raw";

/** The array type of each target. f16 values are raw IEEE half bits. */
export type TargetArray<T extends Target> = T extends "f16" ? Uint16Array
  : T extends "f32" ? Float32Array
  : T extends "i32" ? Int32Array
  : Uint8Array;

/** Where one tensor lives. */
export interface TensorInfo {
  /** The tensor's name in the checkpoint. */
  name: string;
  /** Element type as stored. */
  dtype: StoredDType;
  /** Dimensions, outermost first. */
  shape: number[];
  /** The file (shard) name within the source. */
  file: string;
  /** Absolute byte offset of the tensor's data in `file`. */
  byteOffset: number;
  /** Bytes of the tensor's data. */
  byteLength: number;
}

/** A slice of whole rows (along the first dimension) of a tensor. */
export interface TensorChunk<T extends Target = Target> {
  /** Index of the first row in the tensor. */
  rowStart: number;
  /** Rows (outermost-dimension entries) in this chunk. */
  rows: number;
  /** (rows, ...shape[1:]) converted elements; fresh unless the read was asked to reuse. */
  data: TargetArray<T>;
}

/** Name of a single-file checkpoint. */
export const SINGLE_FILE = "model.safetensors";
/** Name of a sharded checkpoint's index. */
export const INDEX_FILE = "model.safetensors.index.json";
/** How much of a file's start the first read fetches, so one request usually gets the header. */
const HEADER_PROBE_BYTES = 64 * 1024;
/** Input bytes per wasm conversion call: small enough to stay in a core's L2 cache. */
const CONVERT_BLOCK_BYTES = 256 << 10;
/** Default slice size of {@link SafetensorsCheckpoint.readInto}. */
const DEFAULT_SLICE_BYTES = 64 << 20;

const DTYPE_BYTES: Record<StoredDType, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};
const TARGET_ARRAY = {
  f16: Uint16Array,
  f32: Float32Array,
  i32: Int32Array,
  raw: Uint8Array,
} as const;
/** The stored dtype whose bytes already are the target's (read without conversion). */
const SAME_AS_TARGET: Record<Target, StoredDType | null> = {
  f16: "F16",
  f32: "F32",
  i32: "I32",
  raw: null,
};

/** Whether `dtype` read as `to` is the stored bytes themselves. */
function isDirect(dtype: StoredDType, to: Target): boolean {
  return to === "raw" || SAME_AS_TARGET[to] === dtype;
}

/** Bytes per element of `dtype` read as `to`. */
function targetBytes(dtype: StoredDType, to: Target): number {
  return to === "raw" ? DTYPE_BYTES[dtype] : TARGET_ARRAY[to].BYTES_PER_ELEMENT;
}

/** `bytes` as the array type of `to`; `bytes` must start at an aligned offset. */
function view(to: Target, bytes: Uint8Array) {
  const A = TARGET_ARRAY[to];
  return new A(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.length / A.BYTES_PER_ELEMENT);
}

/** The header as the wasm side returns it (canonical JSON, see `Header::to_json`). */
interface ParsedHeader {
  dataStart: number;
  metadata: Record<string, string>;
  tensors: { name: string; dtype: StoredDType; shape: number[]; begin: number; end: number }[];
}

let converter: InstanceType<typeof wasm.StConverter> | undefined;

/** Product of `dims` (1 for none). */
function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function malformed(path: string, e: unknown): ModelFileError {
  return new ModelFileError(
    `Malformed safetensors file ${path}: ${(e as Error).message}. The file is damaged or not a ` +
      `safetensors file; download or export it again.`,
    { cause: e },
  );
}

/** Reads and validates the header of `file`; returns its tensors and metadata. */
async function readHeader(
  source: ModelSource,
  file: string,
): Promise<{ tensors: TensorInfo[]; metadata: Record<string, string> }> {
  const path = source.pathOf(file);
  const size = await source.size(file);
  const head = await source.readRange(file, 0, Math.min(size, HEADER_PROBE_BYTES));
  let parsed: ParsedHeader;
  try {
    const n = wasm.stHeaderLength(head.subarray(0, 8), size);
    const json = 8 + n <= head.length
      ? head.subarray(8, 8 + n)
      : await source.readRange(file, 8, n);
    parsed = JSON.parse(wasm.stParseHeader(json, size));
  } catch (e) {
    throw e instanceof ModelFileError ? e : malformed(path, e);
  }
  const tensors = parsed.tensors.map((t) => ({
    name: t.name,
    dtype: t.dtype,
    shape: t.shape,
    file,
    byteOffset: parsed.dataStart + t.begin,
    byteLength: t.end - t.begin,
  }));
  return { tensors, metadata: parsed.metadata };
}

/** Buffers kept for reuse by one checkpoint (a few slices' worth, until close()). */
const MAX_POOLED_BUFFERS = 4;

/**
 * Reusable byte buffers for reads and conversions: a fresh large allocation costs more than the
 * conversion itself (the OS zero-fills its pages on first touch), so slices reuse a few buffers.
 */
class BufferPool {
  #free: Uint8Array[] = [];

  /** A view of `n` bytes of the smallest free buffer that fits, or of a new one. */
  take(n: number): Uint8Array {
    let best = -1;
    this.#free.forEach((b, i) => {
      if (b.length >= n && (best < 0 || b.length < this.#free[best].length)) best = i;
    });
    const b = best >= 0 ? this.#free.splice(best, 1)[0] : new Uint8Array(n);
    return b.subarray(0, n);
  }

  /** Returns a buffer from {@link take}; past the cap, the smallest free buffer is dropped. */
  give(view: Uint8Array): void {
    this.#free.push(new Uint8Array(view.buffer));
    if (this.#free.length > MAX_POOLED_BUFFERS) {
      this.#free.sort((a, b) => b.length - a.length).pop();
    }
  }

  clear(): void {
    this.#free = [];
  }
}

/** Options of {@link SafetensorsCheckpoint.open}. */
export interface OpenOptions {
  /**
   * The file to open: a `.safetensors` file or a `.index.json` index. Default: `model.safetensors`
   * if present, else `model.safetensors.index.json`.
   */
  file?: string;
}

/** A safetensors checkpoint (one file or a sharded set) read tensor by tensor. */
export class SafetensorsCheckpoint {
  readonly #source: ModelSource;
  readonly #tensors: Map<string, TensorInfo>;
  readonly #metadata: Map<string, Record<string, string>>;
  readonly #pool = new BufferPool();
  /** The file the checkpoint was opened from (single file or index), for messages. */
  readonly origin: string;

  private constructor(
    source: ModelSource,
    origin: string,
    tensors: Map<string, TensorInfo>,
    metadata: Map<string, Record<string, string>>,
  ) {
    this.#source = source;
    this.origin = origin;
    this.#tensors = tensors;
    this.#metadata = metadata;
  }

  /**
   * Opens the checkpoint in `source`, reading only the file headers (in parallel for shards).
   * Throws ModelFileError when files are missing, malformed, or disagree with the index.
   */
  static async open(
    source: ModelSource,
    options: OpenOptions = {},
  ): Promise<SafetensorsCheckpoint> {
    await loadWasm();
    let file = options.file;
    if (file === undefined) {
      if (await source.exists(SINGLE_FILE)) file = SINGLE_FILE;
      else if (await source.exists(INDEX_FILE)) file = INDEX_FILE;
      else {
        throw new ModelFileError(
          `No checkpoint in ${source.location}: neither ${SINGLE_FILE} nor ${INDEX_FILE} is ` +
            `there. Check the model path, or pass the file name.`,
        );
      }
    }
    const files = file.endsWith(".index.json") ? await readIndex(source, file) : null;
    const headers = await Promise.all(
      (files ? [...new Set(files.values())] : [file]).map(async (f) => {
        try {
          return [f, await readHeader(source, f)] as const;
        } catch (e) {
          if (files && e instanceof ModelFileError && !(await source.exists(f))) {
            throw new ModelFileError(
              `Shard "${f}" named in ${source.pathOf(file)} is missing from ${source.location}: ` +
                `download the complete checkpoint.`,
              { cause: e },
            );
          }
          throw e;
        }
      }),
    );
    const tensors = new Map<string, TensorInfo>();
    const metadata = new Map<string, Record<string, string>>();
    for (const [f, h] of headers) {
      metadata.set(f, h.metadata);
      for (const t of h.tensors) {
        const listed = files?.get(t.name);
        if (files && listed !== f) {
          throw new ModelFileError(
            `Tensor "${t.name}" is in shard ${source.pathOf(f)} but ${source.pathOf(file)} ` +
              (listed ? `lists it in "${listed}"` : "does not list it") +
              `: the index and shards are from different checkpoints; download them again.`,
          );
        }
        tensors.set(t.name, t);
      }
    }
    for (const [name, f] of files ?? []) {
      if (!tensors.has(name)) {
        throw new ModelFileError(
          `Tensor "${name}" is listed in ${source.pathOf(file)} under "${f}", but that shard ` +
            `has no such tensor: the index and shards are from different checkpoints.`,
        );
      }
    }
    return new SafetensorsCheckpoint(source, source.pathOf(file), tensors, metadata);
  }

  /** Every tensor, in file order (shards in index order). */
  tensors(): TensorInfo[] {
    return [...this.#tensors.values()];
  }

  /** Whether the checkpoint has a tensor called `name`. */
  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  /** The tensor called `name`; ModelFileError naming it and the checkpoint when absent. */
  get(name: string): TensorInfo {
    const t = this.#tensors.get(name);
    if (!t) {
      throw new ModelFileError(
        `Tensor "${name}" is not in the checkpoint ${this.origin} (${this.#tensors.size} ` +
          `tensors): the checkpoint is incomplete or for a different model.`,
      );
    }
    return t;
  }

  /** The file names of the checkpoint (shards in index order). */
  files(): string[] {
    return [...this.#metadata.keys()];
  }

  /** The `__metadata__` of `file` (default: the first file). */
  metadata(file: string = this.files()[0]): Record<string, string> {
    return this.#metadata.get(file) ?? {};
  }

  /** The tensor's stored bytes, unconverted (e.g. BF16 bits for a shader that unpacks them). */
  readBytes(name: string): Promise<Uint8Array> {
    return this.read(name, "raw");
  }

  /** The whole tensor as f32 (from F32, F16 or BF16). */
  readF32(name: string): Promise<Float32Array> {
    return this.read(name, "f32");
  }

  /** The whole tensor as f16 bits (from F16, BF16, or F32 rounded to nearest even). */
  readF16Bits(name: string): Promise<Uint16Array> {
    return this.read(name, "f16");
  }

  /** The whole tensor as i32 (from I32, or I64 checked to fit). */
  readI32(name: string): Promise<Int32Array> {
    return this.read(name, "i32");
  }

  /** The whole tensor converted to `to`; for huge tensors use {@link readChunks} or {@link readInto}. */
  async read<T extends Target>(name: string, to: T): Promise<TargetArray<T>> {
    const t = this.get(name);
    const A = TARGET_ARRAY[to];
    const out = new A(product(t.shape) * targetBytes(t.dtype, to) / A.BYTES_PER_ELEMENT);
    await this.readInto(name, to, out);
    return out as TargetArray<T>;
  }

  /**
   * Reads the whole tensor converted to `to` into `dest`, in slices of at most `maxBytes`
   * (default 64 MiB): no array of the whole tensor is made on the way. `dest` must be exactly the
   * tensor's size as `to`. (Not into a mapped GPU range: Deno 2.9.6's getMappedRange copies the
   * range, 3.1 s per 64 MiB on an H200. For GPU upload, read pieces with {@link readStored},
   * several at once, and `queue.writeBuffer` each: ~11 GB/s in 8 MiB calls, each followed by a
   * submit.)
   */
  async readInto(
    name: string,
    to: Target,
    dest: ArrayBufferView,
    options: { maxBytes?: number } = {},
  ): Promise<void> {
    const t = this.get(name);
    const s = this.#slicing(t, to, options.maxBytes ?? DEFAULT_SLICE_BYTES);
    const bytes = new Uint8Array(dest.buffer, dest.byteOffset, dest.byteLength);
    if (bytes.length !== s.rows * s.rowOut) {
      throw new InvalidInputError(
        `readInto() of tensor "${name}" (shape [${t.shape}]) as ${to} needs ` +
          `${s.rows * s.rowOut} bytes, got a destination of ${bytes.length}.`,
      );
    }
    if (s.direct) return await this.#source.readInto(t.file, t.byteOffset, bytes);
    for await (const c of this.#rawSlices(t, s.perChunk, true)) {
      this.#convert(t, to, c.bytes, c.rowStart * s.rowElems, bytes.subarray(c.rowStart * s.rowOut));
    }
  }

  /**
   * Fills `dest` with the tensor's stored bytes (unconverted) from byte `byteOffset` of its data:
   * the loader's direct path, which reads pieces of tensors, several at once, straight into GPU
   * staging memory.
   * @throws InvalidInputError when the range is not inside the tensor
   */
  readStored(name: string, byteOffset: number, dest: Uint8Array): Promise<void> {
    const t = this.get(name);
    if (
      !Number.isSafeInteger(byteOffset) || byteOffset < 0 ||
      byteOffset + dest.length > t.byteLength
    ) {
      throw new InvalidInputError(
        `readStored(): bytes ${byteOffset}..${byteOffset + dest.length} are outside tensor ` +
          `"${name}" (${t.byteLength} bytes).`,
      );
    }
    return this.#source.readInto(t.file, t.byteOffset + byteOffset, dest);
  }

  /**
   * The tensor in slices of whole rows (first dimension), each at most `maxBytes` of output, so
   * a 2.3 GB embedding can fill a GPU buffer with the memory of a few slices. The next slice is
   * read while the caller handles this one. 0-d and 1-d tensors are sliced by element.
   *
   * With `reuse: true` each `data` is a view of buffers that the following slices overwrite: use
   * it (e.g. `queue.writeBuffer`, which copies) before asking for the next slice. This saves a
   * fresh allocation per slice, the largest cost after the conversion itself.
   */
  async *readChunks<T extends Target>(
    name: string,
    options: { to: T; maxBytes: number; reuse?: boolean },
  ): AsyncGenerator<TensorChunk<T>> {
    const { to, maxBytes, reuse = false } = options;
    const t = this.get(name);
    const s = this.#slicing(t, to, maxBytes);
    const out = reuse && !s.direct ? this.#pool.take(s.perChunk * s.rowOut) : null;
    try {
      for await (const c of this.#rawSlices(t, s.perChunk, reuse || !s.direct)) {
        const data = s.direct ? view(to, c.bytes) : this.#convert(
          t,
          to,
          c.bytes,
          c.rowStart * s.rowElems,
          out ?? new Uint8Array(c.rows * s.rowOut),
        );
        yield { rowStart: c.rowStart, rows: c.rows, data: data as TargetArray<T> };
      }
    } finally {
      if (out) this.#pool.give(out);
    }
  }

  /** Checks a read of `t` as `to` in slices of `maxBytes`, and plans the slices. */
  #slicing(t: TensorInfo, to: Target, maxBytes: number) {
    if (!Object.hasOwn(TARGET_ARRAY, to)) {
      throw new InvalidInputError(
        `Bad target ${JSON.stringify(to)}: use "f16", "f32", "i32" or "raw".`,
      );
    }
    const rows = t.shape.length === 0 ? 1 : t.shape[0];
    const rowElems = product(t.shape.slice(1));
    const rowOut = rowElems * targetBytes(t.dtype, to);
    // A tensor of no rows has none to fit, whatever its rows' size ([0, 2^64 − 1] is valid).
    if ((rows > 0 && !(maxBytes >= rowOut)) || !Number.isFinite(maxBytes)) {
      throw new InvalidInputError(
        `maxBytes ${maxBytes} is less than one row (${rowOut} bytes of ${to}) of tensor ` +
          `"${t.name}" with shape [${t.shape}]: pass at least ${rowOut}.`,
      );
    }
    const direct = isDirect(t.dtype, to);
    if (!direct) this.#convert(t, to, new Uint8Array(0), 0, new Uint8Array(0)); // fail early
    const perChunk = rowOut === 0 ? Math.max(rows, 1) : Math.floor(maxBytes / rowOut);
    return { rows, rowElems, rowOut, direct, perChunk };
  }

  /**
   * The stored bytes of `t` in slices of `perChunk` rows, the next one read while the caller
   * handles this one. With `reuse`, slices alternate between two pooled buffers (valid until the
   * next slice is asked for); without, each is a fresh array.
   */
  async *#rawSlices(t: TensorInfo, perChunk: number, reuse: boolean) {
    const rows = t.shape.length === 0 ? 1 : t.shape[0];
    const rowIn = product(t.shape.slice(1)) * DTYPE_BYTES[t.dtype];
    const slots: Uint8Array[] = [];
    const read = (rowStart: number, k: number) => {
      const n = Math.min(perChunk, rows - rowStart) * rowIn;
      const dest = reuse
        ? (slots[k % 2] ??= this.#pool.take(perChunk * rowIn)).subarray(0, n)
        : new Uint8Array(n);
      return this.#source.readInto(t.file, t.byteOffset + rowStart * rowIn, dest).then(() => dest);
    };
    let pending: Promise<Uint8Array> | null = rows > 0 ? read(0, 0) : null;
    try {
      for (let rowStart = 0, k = 0; rowStart < rows; rowStart += perChunk, k++) {
        const bytes = await pending!;
        pending = rowStart + perChunk < rows ? read(rowStart + perChunk, k + 1) : null;
        yield { rowStart, rows: Math.min(perChunk, rows - rowStart), bytes };
      }
    } finally {
      await pending?.catch(() => {}); // a caller that stops early leaves no read running
      for (const b of slots) this.#pool.give(b);
    }
  }

  /**
   * Converts `bytes` (elements of `t` from index `first`) to `to`, into the start of `dest`;
   * returns that part of `dest` as the target's array type.
   */
  #convert(t: TensorInfo, to: Target, bytes: Uint8Array, first: number, dest: Uint8Array) {
    converter ??= new wasm.StConverter();
    const inSize = DTYPE_BYTES[t.dtype];
    const outSize = targetBytes(t.dtype, to);
    const out = dest.subarray(0, (bytes.length / inSize) * outSize);
    // In cache-sized blocks: the copy into wasm, the conversion and the copy out then stay in
    // cache and main memory is read and written once (1.4x faster on the H100 host's Xeon).
    const block = CONVERT_BLOCK_BYTES - (CONVERT_BLOCK_BYTES % inSize);
    for (let at = 0; at === 0 || at < bytes.length; at += block) {
      let n: number;
      try {
        n = converter.convert(t.dtype, to, bytes.subarray(at, at + block), first + at / inSize);
      } catch (e) {
        throw new ModelFileError(
          `Cannot read tensor "${t.name}" (${t.dtype}, shape [${t.shape}]) of ` +
            `${this.#source.pathOf(t.file)} as ${to}: ${(e as Error).message}.`,
          { cause: e },
        );
      }
      // Copy out at once: the wasm view dies with the next wasm allocation.
      const mem = (wasm.stMemory() as WebAssembly.Memory).buffer;
      out.set(new Uint8Array(mem, converter.outputPtr(), n), (at / inSize) * outSize);
    }
    return view(to, out);
  }

  /** Closes open files of the source. */
  close(): void {
    this.#pool.clear();
    this.#source.close();
  }
}

/** Reads an index file: tensor name → shard file, in index order. */
async function readIndex(source: ModelSource, file: string): Promise<Map<string, string>> {
  const index = await source.readJson<{ weight_map?: unknown }>(file);
  const map = index?.weight_map;
  const bad = (what: string) =>
    new ModelFileError(
      `${source.pathOf(file)} is not a safetensors index: ${what}. Download it again.`,
    );
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw bad(`it has no "weight_map" object`);
  }
  const out = new Map<string, string>();
  for (const [name, f] of Object.entries(map)) {
    if (typeof f !== "string") throw bad(`tensor "${name}" maps to ${JSON.stringify(f)}`);
    try {
      out.set(name, checkFileName(f));
    } catch {
      throw bad(`tensor "${name}" maps to the unsafe file name ${JSON.stringify(f)}`);
    }
  }
  return out;
}

/** One tensor of {@link readSafetensors}' result. */
export interface ReadSafetensorsResult {
  /** Element type as stored. */
  dtype: StoredDType;
  /** Dimensions, outermost first. */
  shape: number[];
  /** F32 → Float32Array; I32, I64 (range-checked) → Int32Array; BF16, F16 → raw Uint16Array. */
  data: Float32Array | Int32Array | Uint16Array;
}

/**
 * Every tensor of a whole safetensors file held in memory (reference fixtures, CLI outputs).
 * Same validation and errors as {@link SafetensorsCheckpoint}; `path` (where the bytes came from)
 * is what error messages name.
 *
 * @example
 * ```ts ignore
 * const path = "tests/fixtures/tiny-qwen2vl/reference/case0.safetensors";
 * const ref = await readSafetensors(await Deno.readFile(path), path);
 * const ids = ref.get("input_ids")!.data as Int32Array;
 * ```
 */
export async function readSafetensors(
  bytes: Uint8Array,
  path = SINGLE_FILE,
): Promise<Map<string, ReadSafetensorsResult>> {
  const cut = path.lastIndexOf("/");
  const file = path.slice(cut + 1) || SINGLE_FILE;
  const location = cut < 0 ? "memory" : path.slice(0, cut) || "/";
  const ckpt = await SafetensorsCheckpoint.open(
    new MemoryModelSource({ [file]: bytes }, location),
    {
      file,
    },
  );
  const out = new Map<string, ReadSafetensorsResult>();
  for (const t of ckpt.tensors()) {
    let data: ReadSafetensorsResult["data"];
    if (t.dtype === "BF16" || t.dtype === "F16") {
      const raw = await ckpt.readBytes(t.name);
      data = new Uint16Array(raw.buffer as ArrayBuffer, raw.byteOffset, raw.length / 2);
    } else {
      data = await ckpt.read(t.name, t.dtype === "F32" ? "f32" : "i32");
    }
    out.set(t.name, { dtype: t.dtype, shape: t.shape, data });
  }
  return out;
}

// ---- Writing ----

/** The dtypes the writer takes. F16/BF16 data are raw bits in a Uint16Array. */
export type WritableDType = "F32" | "I32" | "F16" | "BF16";

/** One tensor to write from memory. */
export interface TensorData {
  /** Element type to store. */
  dtype: WritableDType;
  /** Dimensions, outermost first. */
  shape: readonly number[];
  /** Row-major elements: Float32Array (F32), Int32Array (I32), Uint16Array bits (F16, BF16). */
  data: Float32Array | Int32Array | Uint16Array;
}

/** One tensor to write streaming: its data come from `fill`, slice by slice. */
export interface TensorSpec {
  name: string;
  dtype: WritableDType;
  shape: readonly number[];
  /**
   * Fills `out` with the tensor's row-major elements `first .. first + out.length`
   * (Float32Array for F32, Int32Array for I32, Uint16Array bits for F16/BF16).
   */
  fill(out: Float32Array | Int32Array | Uint16Array, first: number): void;
}

const WRITABLE_ARRAY = {
  F32: Float32Array,
  I32: Int32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
} as const;

/** Alignment of the data buffer's start (the header is padded with spaces up to it). */
const DATA_ALIGN = 8;

interface Layout<S> {
  /** Length prefix + padded header JSON. */
  head: Uint8Array;
  /** Tensors in data order with their byte ranges in the data buffer. */
  order: { spec: S; begin: number; end: number }[];
  /** Bytes of the whole file. */
  fileBytes: number;
}

/**
 * Plans a file: checks names, dtypes and shapes, orders tensors by element size (largest first,
 * then by name, like huggingface/safetensors) so each starts aligned to its element size, and
 * builds the header padded so the data start at a multiple of 8.
 */
function layout<S extends { name: string; dtype: WritableDType; shape: readonly number[] }>(
  specs: S[],
  metadata?: Record<string, string>,
): Layout<S> {
  const seen = new Set<string>();
  for (const s of specs) {
    if (s.name === "" || s.name === "__metadata__" || seen.has(s.name)) {
      throw new InvalidInputError(
        `Bad tensor name ${JSON.stringify(s.name)}: names must be unique, non-empty and not ` +
          `"__metadata__".`,
      );
    }
    seen.add(s.name);
    if (!(s.dtype in WRITABLE_ARRAY)) {
      throw new InvalidInputError(
        `Tensor "${s.name}" has dtype ${
          JSON.stringify(s.dtype)
        }: the writer takes F32, I32, F16, BF16.`,
      );
    }
    if (!Array.isArray(s.shape) || !s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new InvalidInputError(
        `Tensor "${s.name}" has shape ${JSON.stringify(s.shape)}: use an array of integers >= 0.`,
      );
    }
  }
  const size = (s: S) => DTYPE_BYTES[s.dtype];
  const sorted = [...specs].sort((a, b) =>
    size(b) - size(a) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  const order: Layout<S>["order"] = [];
  let end = 0;
  for (const spec of sorted) {
    const begin = end;
    end += product(spec.shape) * size(spec);
    order.push({ spec, begin, end });
    header[spec.name] = { dtype: spec.dtype, shape: spec.shape, data_offsets: [begin, end] };
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((8 + json.length) / DATA_ALIGN) * DATA_ALIGN - 8;
  const head = new Uint8Array(8 + padded).fill(0x20); // pad with spaces, as the format allows
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return { head, order, fileBytes: head.length + end };
}

/**
 * A safetensors file of `tensors`, in memory. Tensors are stored little-endian (the byte order
 * of typed arrays on every platform qvq runs on).
 *
 * @example
 * ```ts
 * import { writeSafetensors } from "./safetensors.ts";
 * const bytes = writeSafetensors({
 *   logits_last: { dtype: "F32", shape: [2], data: new Float32Array([0.5, -1]) },
 *   image_grid_thw: { dtype: "I32", shape: [1, 3], data: new Int32Array([1, 4, 4]) },
 * });
 * ```
 */
export function writeSafetensors(
  tensors: Record<string, TensorData>,
  metadata?: Record<string, string>,
): Uint8Array {
  const specs = Object.entries(tensors).map(([name, t]) => ({ name, ...t }));
  const { head, order, fileBytes } = layout(specs, metadata); // checks names, dtypes, shapes
  for (const s of specs) {
    const want = WRITABLE_ARRAY[s.dtype];
    if (!(s.data instanceof want)) {
      throw new InvalidInputError(
        `Tensor "${s.name}" (${s.dtype}) needs its data in a ${want.name}, got ` +
          `${(s.data as object)?.constructor?.name}.`,
      );
    }
    if (s.data.length !== product(s.shape)) {
      throw new InvalidInputError(
        `Tensor "${s.name}" has shape [${s.shape}] (${product(s.shape)} elements) but ` +
          `${s.data.length} data elements.`,
      );
    }
  }
  const out = new Uint8Array(fileBytes);
  out.set(head);
  for (const { spec, begin } of order) {
    out.set(
      new Uint8Array(spec.data.buffer, spec.data.byteOffset, spec.data.byteLength),
      head.length + begin,
    );
  }
  return out;
}

/** Options of the streaming writers. */
export interface StreamWriteOptions {
  metadata?: Record<string, string>;
  /** Bytes per `fill` call and write (default 8 MiB). */
  chunkBytes?: number;
}

/**
 * Writes a safetensors file to `sink` without holding it in memory: the header first, then each
 * tensor in slices of `chunkBytes`, filled by its spec's `fill`. Closes the sink; returns the file
 * size in bytes.
 *
 * @example
 * ```ts ignore
 * const file = await Deno.create("big.safetensors");
 * await writeSafetensorsStream([{ name: "w", dtype: "BF16", shape: [1 << 20, 1024], fill: (out) => out.fill(0x3f80) }], file.writable);
 * ```
 */
export async function writeSafetensorsStream(
  specs: TensorSpec[],
  sink: WritableStream<Uint8Array>,
  options: StreamWriteOptions = {},
): Promise<number> {
  const { head, order, fileBytes } = layout(specs, options.metadata);
  const chunkBytes = options.chunkBytes ?? 8 << 20;
  const writer = sink.getWriter();
  try {
    await writer.write(head);
    for (const { spec, begin, end } of order) {
      const Arr = WRITABLE_ARRAY[spec.dtype];
      const total = (end - begin) / Arr.BYTES_PER_ELEMENT;
      const step = Math.max(1, Math.floor(chunkBytes / Arr.BYTES_PER_ELEMENT));
      for (let first = 0; first < total; first += step) {
        // A fresh slice each time: a sink may keep the chunk it was given.
        const out = new Arr(Math.min(step, total - first));
        spec.fill(out, first);
        await writer.write(new Uint8Array(out.buffer));
      }
    }
    await writer.close();
  } catch (e) {
    await writer.abort(e).catch(() => {});
    throw e;
  }
  return fileBytes;
}

/** Options of {@link writeShardedSafetensors}. */
export interface ShardedWriteOptions extends StreamWriteOptions {
  /** A new shard starts when the next tensor would take the current one past this many bytes. */
  maxShardBytes: number;
  /** Opens a file of the checkpoint for writing (shards, then the index). */
  open(file: string): WritableStream<Uint8Array> | Promise<WritableStream<Uint8Array>>;
}

/** The JSON of a `model.safetensors.index.json`. */
export interface SafetensorsIndex {
  metadata: { total_size: number };
  weight_map: Record<string, string>;
}

/**
 * Writes a sharded checkpoint in the Hugging Face layout: `model-0000i-of-0000n.safetensors`
 * shards (tensors in the given order, packed greedily up to `maxShardBytes`; a bigger tensor gets
 * a shard of its own) and `model.safetensors.index.json`. Streams like
 * {@link writeSafetensorsStream}, so multi-GB synthetic checkpoints need little memory.
 *
 * @example
 * ```ts ignore
 * await writeShardedSafetensors(specs, {
 *   maxShardBytes: 1 << 30,
 *   open: async (f) => (await Deno.create(`${dir}/${f}`)).writable,
 * });
 * ```
 */
export async function writeShardedSafetensors(
  specs: TensorSpec[],
  options: ShardedWriteOptions,
): Promise<{ files: string[]; index: SafetensorsIndex }> {
  const shards: TensorSpec[][] = [];
  let current: TensorSpec[] = [];
  let bytes = 0;
  for (const s of specs) {
    const n = product(s.shape) * (DTYPE_BYTES[s.dtype] ?? 0);
    if (current.length && bytes + n > options.maxShardBytes) {
      shards.push(current);
      current = [];
      bytes = 0;
    }
    current.push(s);
    bytes += n;
  }
  if (current.length || !shards.length) shards.push(current);
  const pad = (i: number) => String(i).padStart(5, "0");
  const files = shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const index: SafetensorsIndex = { metadata: { total_size: 0 }, weight_map: {} };
  for (const [i, shard] of shards.entries()) {
    await writeSafetensorsStream(shard, await options.open(files[i]), options);
    for (const s of shard) {
      index.metadata.total_size += product(s.shape) * DTYPE_BYTES[s.dtype];
      index.weight_map[s.name] = files[i];
    }
  }
  const writer = (await options.open(INDEX_FILE)).getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(index, null, 2) + "\n"));
  await writer.close();
  return { files, index };
}
