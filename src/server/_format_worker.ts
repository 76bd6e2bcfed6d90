/**
 * A thread that compiles responseFormat automata (src/generate/options.ts compileFormat) for the
 * engine's worker (src/server/_format_compiler.ts): a schema heavy with patterns takes seconds to
 * compile or refuse, which on the engine's thread held every decode loop running there.
 * Message in: `{ id, job }`; out: `{ id, dfa }` (its tables transferred) or `{ id, error }`.
 * @module
 */
/// <reference lib="deno.worker" />
import { compileFormat, type FormatJob } from "../generate/options.ts";

self.onmessage = (e: MessageEvent<{ id: number; job: FormatJob }>) => {
  const { id, job } = e.data;
  try {
    const dfa = compileFormat(job);
    const tables = [...new Set([dfa.next.buffer, dfa.accept.buffer])] as ArrayBuffer[];
    self.postMessage({ id, dfa }, { transfer: tables });
  } catch (error) {
    const err = error instanceof Error ? error : new Error(String(error));
    self.postMessage({ id, error: { name: err.constructor.name, message: err.message } });
  }
};
