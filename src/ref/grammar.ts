/**
 * Reference for kernels/grammar.wgsl: the allowed-ids bitmask and the state after a drawn id,
 * written as plain loops over the automaton of src/generate/json_grammar.ts.
 * @module
 */
import {
  type GrammarState,
  Mode,
  stepBytes,
  tokenBytes,
  type TokenTable,
} from "../generate/json_grammar.ts";
import { type Dfa, DFA_NONE, dfaWalk } from "../generate/_automaton.ts";

/**
 * Bit i (word i >> 5, bit i & 31) set when id i may come next from `state`: an end id once the
 * object is closed (DONE) or the state FAILED; any id, an end id too, when its bytes (it has some)
 * are accepted one after another.
 * @returns (ceil(vocab / 32)) u32
 */
export function maskRef(
  state: GrammarState,
  table: TokenTable,
  endIds: readonly number[],
): Uint32Array {
  const mode = state[0];
  return maskOf(
    table,
    endIds,
    mode === Mode.DONE || mode === Mode.FAILED,
    (bytes) => mode !== Mode.FAILED && stepBytes(state, bytes) !== undefined,
  );
}

/**
 * (ceil(vocab / 32)) u32 bits: an end id where `ended` (the answer may end there); any id with
 * bytes, an end id too, where `goesOn` of its bytes.
 */
function maskOf(
  table: TokenTable,
  endIds: readonly number[],
  ended: boolean,
  goesOn: (bytes: Uint8Array) => boolean,
): Uint32Array {
  const out = new Uint32Array(Math.ceil(table.vocab / 32));
  for (let id = 0; id < table.vocab; id++) {
    const bytes = tokenBytes(table, id);
    const ok = (ended && endIds.includes(id)) || (bytes.length > 0 && goesOn(bytes));
    if (ok) out[id >> 5] |= 1 << (id & 31);
  }
  return out;
}

/**
 * The state after id `id` is drawn: unchanged for an end id once DONE (or FAILED), FAILED for an
 * id the state refuses (or one with no bytes, or past the vocabulary).
 */
export function advanceRef(
  state: GrammarState,
  table: TokenTable,
  id: number,
  endIds: readonly number[],
): GrammarState {
  const mode = state[0];
  if ((mode === Mode.DONE || mode === Mode.FAILED) && endIds.includes(id)) return state.slice();
  const bytes = id < table.vocab ? tokenBytes(table, id) : new Uint8Array();
  const next = bytes.length > 0 ? stepBytes(state, bytes) : undefined;
  if (next) return next;
  const failed = state.slice();
  failed[0] = Mode.FAILED;
  return failed;
}

/**
 * {@link maskRef} for a DFA grammar (kernels/grammar.wgsl `#if DFA`): from DFA state `q`
 * (DFA_NONE once a refused id was drawn), an end id is allowed where `q` accepts (or is
 * DFA_NONE); any id, an end id too, when its bytes (it has some) walk to a state.
 */
export function maskDfaRef(
  q: number,
  table: TokenTable,
  dfa: Dfa,
  endIds: readonly number[],
): Uint32Array {
  return maskOf(
    table,
    endIds,
    q === DFA_NONE || dfa.accept[q] === 1,
    (bytes) => q !== DFA_NONE && dfaWalk(dfa, q, bytes) !== DFA_NONE,
  );
}

/** {@link advanceRef} for a DFA grammar: the state after `id` is drawn from `q`. */
export function advanceDfaRef(
  q: number,
  table: TokenTable,
  dfa: Dfa,
  id: number,
  endIds: readonly number[],
): number {
  if ((q === DFA_NONE || dfa.accept[q] === 1) && endIds.includes(id)) return q;
  if (q === DFA_NONE || id >= table.vocab) return DFA_NONE;
  const bytes = tokenBytes(table, id);
  return bytes.length ? dfaWalk(dfa, q, bytes) : DFA_NONE;
}
