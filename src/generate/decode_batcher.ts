/**
 * Batched decode's token pump: the generations running at once (PipelineOptions.parallel) share one
 * decode loop, whose steps run their tokens as the rows of one pass (Qwen2VLModel.createDecodeBatch)
 * — a decode step's time is its weight reads, and a batch reads the weights once for all of them.
 * Each generation reads its ids through {@link DecodeBatcher.pump}, as through pumpTokens
 * (src/generate/token_pump.ts: the same batches of steps, the same record-while-the-GPU-runs
 * order, the same readbacks); one loop records a command buffer a cycle for all of them:
 *
 *   per new generation, ring entry 0 (its sampler over the prefill's logits); then K times: one
 *   decode step of every generation (a DecodeBatch, or a generation's own step when it runs
 *   alone) and each one's sampler and advance; then each one's new ring entries into its staging.
 *   (A new generation steps in its first cycle only beside others under way: alone, its first
 *   cycle is entry 0 only, so its first token comes as soon as from pumpTokens.)
 *
 * K doubles from `firstBatch` (default 1), as pumpTokens' batches do, while a cycle's GPU time
 * stays under `batchMs`, and starts again there when a generation joins (its first tokens come
 * soon), and is at most the steps left to the generation with the fewest. Generations join and
 * leave between cycles. One that leaves (its consumer stopped, its signal aborted, its run
 * disposed) is dropped from the next cycle; the cycle already submitted runs on, as pumpTokens'
 * does. One whose consumer has not taken its last batch read back sits out the cycles until it
 * does (pumpTokens records a batch only after the one before was taken): a slow client's answer
 * does not run on past a stop it has not read. Errors: one whose own recording throws (or whose side ring's take() does) ends with that
 * error alone; a failed readback (a lost device) or batch ends every one whose entries are not all
 * read. Each keeps its row of a batch while it stays — what it runs there is built once, on the
 * session — and a newcomer takes the first free row (up to maxRows a batch; more make another):
 * joining costs the CPU only its own dispatches' making the first time (7B ≈ 6 ms, QVQ-72B ≈
 * 16 ms), not the whole batch's.
 *
 * Rows of a batch are independent: a generation's tokens do not depend on the others', though the
 * few-row GEMV's tuning follows the batch's size, so its logits are not the bits of its step alone
 * (≈ 1e-7 of the largest logit apart: a greedy answer can differ where two tokens tie that
 * closely).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { createReadback, readMapped } from "../gpu/buffers.ts";
import { InvalidInputError } from "../errors.ts";
import { GEMV_XROWS_MAX } from "../../kernels/linear.ts";
import type { Session } from "../model/session.ts";
import {
  checkPump,
  DEFAULT_BATCH_MS,
  DEFAULT_MAX_BATCH,
  type SideRing,
  turnEventLoop,
} from "./token_pump.ts";

/** What a generation offers the loop (src/generate/session_run.ts SessionRun). */
export interface BatchRun {
  /** The prefilled session it samples from. */
  readonly session: Session;
  /** (capacity) u32: ring entry i = the i-th generated token (the session's token ring). */
  readonly ring: GPUBuffer;
  /** Whether the run was disposed (its generation ended): the loop records nothing more of it. */
  readonly disposed: boolean;
  /** Records ring entry 0: the sampler over the prefill's logits. */
  recordFirst(pass: GPUComputePassEncoder): void;
  /** Records what follows a decode step of the session: its sampler and the state's advance. */
  recordSampling(pass: GPUComputePassEncoder): void;
}

/** The decode steps of the model the generations run on (Qwen2VLModel). */
export interface BatchModel {
  readonly gpu: Gpu;
  /** Whether n sessions' steps run as one batch. */
  batchesDecode(n: number): boolean;
  /**
   * One step of each session, as rows of one pass (undefined: an empty row); cheap to make where
   * its sessions have been at those rows before (Qwen2VLModel.createDecodeBatch).
   */
  createDecodeBatch(rows: readonly (Session | undefined)[]): {
    encode(pass: GPUComputePassEncoder): void;
  };
  /** One step of one session. */
  encodeDecodeStep(pass: GPUComputePassEncoder, session: Session): void;
}

/** Options of a {@link DecodeBatcher}: the cycles' schedule, shared by its generations. */
export interface BatcherOptions {
  /** Steps of a cycle when a generation joins (default 1). */
  firstBatch?: number;
  /** Most steps a cycle (default 32, as pumpTokens). */
  maxBatch?: number;
  /** Cycles double only while the last ran under this many ms of GPU time (default 50). */
  batchMs?: number;
  /** The clock that times cycles, in ms (default performance.now). */
  now?: () => number;
  /** Most rows of one DecodeBatch (default: kernels/linear.ts GEMV_XROWS_MAX, 16). */
  maxRows?: number;
}

/** Options of {@link DecodeBatcher.pump}: pumpTokens' options of one generation. */
export interface BatchPumpOptions {
  /** Ring entries to produce in all. */
  total: number;
  /** Ring entry to start from (default 0: the prefill's sample). */
  first?: number;
  /** Leaves the loop once aborted. */
  signal?: AbortSignal;
  /** A second ring read back with the tokens (the logprobs records). */
  side?: SideRing;
}

/** One generation in the loop. */
interface Member {
  run: BatchRun;
  side?: SideRing;
  signal?: AbortSignal;
  /** Ring entries [start, end) are its. */
  end: number;
  /** Next ring entry to record, and to hand over. */
  recorded: number;
  delivered: number;
  /**
   * Batches read back, not yet taken: ring entries [first, first + ids.length), with their side
   * ring's words (handed to side.take by the pump, as its ids are yielded).
   */
  queue: { first: number; ids: Uint32Array; side?: Uint32Array }[];
  error?: unknown;
  left: boolean;
  /** Wakes its consumer (a batch, an error, the end). */
  wake?: () => void;
  /** Staging buffers: free ones, all of them, and how many cycles in flight use one. */
  free: GPUBuffer[];
  all: GPUBuffer[];
  inflight: number;
}

/** A member's part of a recorded cycle. */
interface Part {
  m: Member;
  first: number;
  count: number;
  staging: GPUBuffer;
}

/**
 * A recorded cycle: its command buffer and parts. (None waits between its recording and its
 * submit: a generation cannot leave or join in between.)
 */
interface Cycle {
  commands: GPUCommandBuffer;
  steps: number;
  parts: Part[];
}

/**
 * One decode loop for every generation of a model running at once (see the module doc). Create one
 * per model, pump each generation through it, dispose it with the model.
 */
export class DecodeBatcher {
  readonly #model: BatchModel;
  readonly #firstBatch: number;
  readonly #maxBatch: number;
  readonly #batchMs: number;
  readonly #now: () => number;
  readonly #maxRows: number;
  #members: Member[] = [];
  #size: number;
  #stepMs = NaN;
  #loop: Promise<void> | undefined;
  /**
   * The members' rows, in batches of at most maxRows: a member keeps its row while it stays (its
   * dispatches at that row are built once), a newcomer takes the first free one; undefined: free.
   */
  #sets: (Member | undefined)[][] = [];
  #disposed = false;

  constructor(model: BatchModel, options: BatcherOptions = {}) {
    this.#model = model;
    this.#maxBatch = Math.max(1, options.maxBatch ?? DEFAULT_MAX_BATCH);
    this.#firstBatch = Math.max(1, Math.min(options.firstBatch ?? 1, this.#maxBatch));
    this.#batchMs = options.batchMs ?? DEFAULT_BATCH_MS;
    this.#now = options.now ?? (() => performance.now());
    this.#maxRows = options.maxRows ?? GEMV_XROWS_MAX;
    this.#size = this.#firstBatch;
  }

  /** Generations in the loop now. */
  get members(): number {
    return this.#members.length;
  }

  /**
   * Joins a generation to the loop and yields its ring entries' ids a batch at a time, as
   * pumpTokens does. Stop consuming (break / return()) to leave.
   * @throws RangeError where the entries do not fit the ring (or the side ring)
   * @throws InvalidInputError after dispose(), or for a session already in the loop
   */
  async *pump(
    run: BatchRun,
    options: BatchPumpOptions,
  ): AsyncGenerator<Uint32Array, void, undefined> {
    if (this.#disposed) throw new InvalidInputError("DecodeBatcher.pump: the batcher was disposed");
    const start = options.first ?? 0, total = options.total;
    checkPump("DecodeBatcher.pump", run.ring, start, total, options.side);
    if (this.#members.some((m) => m.run.session === run.session && !this.#gone(m))) {
      throw new InvalidInputError("DecodeBatcher.pump: this session already decodes in the loop");
    }
    const m: Member = {
      run,
      side: options.side,
      signal: options.signal,
      end: start + total,
      recorded: start,
      delivered: start,
      queue: [],
      left: false,
      free: [],
      all: [],
      inflight: 0,
    };
    if (total === 0) return;
    this.#members.push(m);
    this.#seat(m);
    this.#size = this.#firstBatch;
    this.#start();
    const onAbort = () => m.wake?.();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      while (true) {
        const batch = m.queue.shift();
        if (batch) {
          // (in the consumer's turn, as pumpTokens: a take() that throws fails this generation)
          if (batch.side) m.side?.take(batch.side, batch.first, batch.ids.length);
          yield batch.ids;
          // Taken: a member held back for it steps again (the loop may have ended meanwhile).
          if (m.queue.length === 0) this.#start();
          continue;
        }
        // (every entry read: a later cycle's error, or the run disposed since, is not this one's)
        if (m.delivered >= m.end) return;
        if (m.error !== undefined) throw m.error;
        if (this.#gone(m)) return;
        await new Promise<void>((resolve) => m.wake = resolve);
        m.wake = undefined;
      }
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      this.#leave(m);
    }
  }

  /**
   * Starts the loop where it is not running: after this turn's code, so that generations joining
   * together (a server's requests arriving at once) step together from the first cycle.
   */
  #start(): void {
    this.#loop ??= Promise.resolve().then(() => this.#run());
  }

  /** pump() refuses afterwards. Call once no generation runs. */
  dispose(): void {
    this.#disposed = true;
  }

  /** Gives m the first free row (a new set of rows where every set is full). */
  #seat(m: Member): void {
    for (const set of this.#sets) {
      const free = set.indexOf(undefined);
      if (free >= 0) {
        set[free] = m;
        return;
      }
      if (set.length < this.#maxRows) {
        set.push(m);
        return;
      }
    }
    this.#sets.push([m]);
  }

  /** Frees m's row (rows after the last member's go). */
  #unseat(m: Member): void {
    for (const set of this.#sets) {
      const at = set.indexOf(m);
      if (at < 0) continue;
      set[at] = undefined;
      while (set.length && set[set.length - 1] === undefined) set.pop();
    }
    this.#sets = this.#sets.filter((set) => set.length > 0);
  }

  /** Whether the loop records nothing more of m. */
  #gone(m: Member): boolean {
    return m.left || m.error !== undefined || m.run.disposed || m.run.session.disposed ||
      m.signal?.aborted === true;
  }

  #leave(m: Member): void {
    if (m.left) return;
    m.left = true;
    const i = this.#members.indexOf(m);
    if (i >= 0) this.#members.splice(i, 1);
    this.#unseat(m);
    this.#release(m);
  }

  /** Frees a member's staging once it has left and no cycle in flight writes them. */
  #release(m: Member): void {
    if (!m.left || m.inflight > 0) return;
    for (const s of m.all) s.destroy();
    m.all = [];
    m.free = [];
  }

  /** Ring entries one cycle can give a member: entry 0 and maxBatch steps. */
  #stagingBytes(m: Member): number {
    const entries = this.#maxBatch + 1;
    return entries * 4 + (m.side ? entries * m.side.entryBytes : 0);
  }

  /** Records the next cycle for the members in the loop now (undefined: nothing left to record). */
  #prepare(): Cycle | undefined {
    // (a member gone without leaving — its run disposed while its consumer waits — is woken to
    // see it)
    for (const m of this.#members) if (this.#gone(m)) m.wake?.();
    // A member whose consumer has not taken its last batch steps no further until it does (as
    // pumpTokens records a batch only after the one before was taken): a slow client's answer,
    // past a stop it has not read yet, does not run on to its whole budget.
    const active = this.#members.filter((m) =>
      !this.#gone(m) && m.recorded < m.end && m.queue.length === 0
    );
    if (active.length === 0) return undefined;
    const fresh = new Set(active.filter((m) => m.recorded === 0));
    // Model steps each member has left after this cycle's entry 0.
    const left = (m: Member) => m.end - m.recorded - (fresh.has(m) ? 1 : 0);
    // A new member steps in its first cycle only beside members under way, whose steps the cycle
    // runs anyway (a batch's rows cost little more than one): alone, its first token comes from a
    // cycle of entry 0 only, as pumpTokens' first batch.
    const under = active.some((m) => !fresh.has(m) && left(m) > 0);
    const stepping = active.filter((m) => left(m) > 0 && (under || !fresh.has(m)));
    const steps = stepping.length === 0 ? 0 : Math.min(this.#size, ...stepping.map((m) => left(m)));
    if (!(this.#size * this.#stepMs >= this.#batchMs)) {
      this.#size = Math.min(this.#maxBatch, this.#size * 2);
    }
    const steppers = this.#steppers(new Set(stepping));
    const enc = this.#model.gpu.device.createCommandEncoder({ label: `decode batch ×${steps}` });
    const pass = enc.beginComputePass({ label: `decode batch ×${steps}` });
    // A member whose own recording throws ends with that error and records nothing more; its
    // row of the batch steps on this cycle (rows are independent), its entries are not read.
    const failed = new Set<Member>();
    const record = (m: Member, what: () => void) => {
      if (failed.has(m)) return;
      try {
        what();
      } catch (error) {
        failed.add(m);
        m.error = error;
        m.wake?.();
      }
    };
    for (const m of fresh) record(m, () => m.run.recordFirst(pass));
    for (let i = 0; i < steps; i++) {
      for (const step of steppers) step(pass);
      for (const m of stepping) record(m, () => m.run.recordSampling(pass));
    }
    pass.end();
    const parts = active.filter((m) => !failed.has(m)).map((m) => {
      const count = (fresh.has(m) ? 1 : 0) + (stepping.includes(m) ? steps : 0);
      let staging = m.free.pop();
      if (!staging) {
        staging = createReadback(this.#model.gpu, this.#stagingBytes(m), "decode_batcher.staging");
        m.all.push(staging);
      }
      enc.copyBufferToBuffer(m.run.ring, m.recorded * 4, staging, 0, count * 4);
      if (m.side) {
        const n = m.side.entryBytes;
        enc.copyBufferToBuffer(
          m.side.buffer,
          m.recorded * n,
          staging,
          (this.#maxBatch + 1) * 4,
          count * n,
        );
      }
      const part = { m, first: m.recorded, count, staging };
      m.recorded += count;
      m.inflight++;
      return part;
    });
    return { commands: enc.finish(), steps, parts };
  }

  /**
   * What records one step of the members stepping: per set of rows, a batch of their rows (the
   * others left empty), or where one steps alone (or the model does not batch that many rows) its
   * own step.
   */
  #steppers(stepping: Set<Member>): ((pass: GPUComputePassEncoder) => void)[] {
    return this.#sets.flatMap((set) => {
      const rows = set.map((m) => m && stepping.has(m) ? m.run.session : undefined);
      while (rows.length && rows[rows.length - 1] === undefined) rows.pop();
      const sessions = rows.filter((s) => s !== undefined);
      if (sessions.length > 1 && this.#model.batchesDecode(rows.length)) {
        const batch = this.#model.createDecodeBatch(rows);
        return [(pass: GPUComputePassEncoder) => batch.encode(pass)];
      }
      return sessions.map((s) => (pass: GPUComputePassEncoder) =>
        this.#model.encodeDecodeStep(pass, s)
      );
    });
  }

  /** The loop: runs while any member has entries to record or read (see the module doc). */
  async #run(): Promise<void> {
    const gpu = this.#model.gpu;
    let running: Cycle | undefined, next: Cycle | undefined;
    let since = NaN; // when the last wait returned
    try {
      while (true) {
        if (!running) {
          running = this.#prepare();
          if (!running) break;
          gpu.device.queue.submit([running.commands]);
          since = NaN;
        }
        // The next cycle, recorded while the GPU runs this one.
        next = this.#prepare();
        const reads = running.parts.filter((p) => !p.m.left).map((p) => {
          const bytes = p.m.side
            ? (this.#maxBatch + 1) * 4 + p.count * p.m.side.entryBytes
            : p.count * 4;
          // Deno waits for the GPU inside the first of these calls (src/generate/token_pump.ts).
          return { p, bytes, mapped: p.staging.mapAsync(GPUMapMode.READ, 0, bytes) };
        });
        if (next) gpu.device.queue.submit([next.commands]);
        const t = this.#now();
        if (!Number.isNaN(since) && running.steps > 0) this.#stepMs = (t - since) / running.steps;
        since = t;
        const data = await Promise.all(
          reads.map((r) =>
            readMapped(r.p.staging, r.mapped, r.bytes).catch((cause) => {
              throw new Error("token ring readback failed (device lost?)", { cause });
            })
          ),
        );
        for (const p of running.parts) {
          p.m.inflight--;
          p.m.free.push(p.staging);
        }
        reads.forEach(({ p }, i) => {
          const m = p.m;
          if (m.left) return;
          m.queue.push({
            first: p.first,
            ids: new Uint32Array(data[i], 0, p.count),
            ...(m.side ? { side: new Uint32Array(data[i], (this.#maxBatch + 1) * 4) } : {}),
          });
          m.delivered = p.first + p.count;
          m.wake?.();
        });
        for (const p of running.parts) this.#release(p.m);
        [running, next] = [next, undefined];
        if (!running) since = NaN;
        await turnEventLoop();
      }
    } catch (error) {
      // (a readback failed — the device is lost — or making a batch failed: every member ends
      // with the error)
      const parts = [...running?.parts ?? [], ...next?.parts ?? []];
      for (const m of new Set([...this.#members, ...parts.map((p) => p.m)])) {
        m.error = error;
        m.inflight = 0;
        m.wake?.();
        this.#release(m);
      }
    } finally {
      // (set where the loop decides to end, with no wait after: a generation joining later
      // starts a new loop)
      this.#loop = undefined;
    }
  }
}
