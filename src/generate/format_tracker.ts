/**
 * A constrained answer's state on the host, token by token, as the GPU's grammar advance
 * (kernels/grammar.wgsl) moves it — so the host can tell, when a stop id comes back, whether it
 * ended the answer or is text. Beside a response format a stop id ends the answer only where the
 * answer may end (JSON mode: the object is closed; a DFA: an accepting state); before that, a stop
 * id that is text is the answer's text like any other token, drawn where the format allows its
 * bytes (`{"a":tru` goes on with a stop id "e"; an array's "]" closes it), so a format never
 * leaves no token to draw, and the answer ends only once whole.
 * @module
 */
import { type Dfa, DFA_NONE, dfaWalk } from "./_automaton.ts";
import { type GrammarState, isComplete, Mode, stepBytes } from "./json_grammar.ts";

/** The format's state after each drawn id, and which drawn ids end the answer. */
export class FormatTracker {
  readonly #dfa?: Dfa;
  /** JSON mode's automaton words, or a DFA's state in word 0 (DFA_NONE once refused). */
  #state: GrammarState;
  readonly #ends: ReadonlySet<number>;
  readonly #bytesOf: (id: number) => ArrayLike<number>;

  /**
   * @param constraint "json_object" (JSON mode's automaton) or the DFA the answer is held to
   * @param start the state before the first token, as the GPU's grammar buffer starts
   * @param endIds the ids that end the answer where it may end (eos and stop ids)
   * @param bytesOf a token's bytes as the GPU's token table holds them (none: special, padding)
   */
  constructor(
    constraint: Dfa | "json_object",
    start: GrammarState,
    endIds: readonly number[],
    bytesOf: (id: number) => ArrayLike<number>,
  ) {
    if (constraint !== "json_object") this.#dfa = constraint;
    this.#state = start.slice();
    this.#ends = new Set(endIds);
    this.#bytesOf = bytesOf;
  }

  /**
   * Whether the answer may end here: whole, or past a refused token (which the sampler draws
   * only where nothing else could be: then only an end id may follow).
   */
  get mayEnd(): boolean {
    const dfa = this.#dfa, s = this.#state;
    if (dfa) return s[0] === DFA_NONE || dfa.accept[s[0]] === 1;
    return isComplete(s) || s[0] === Mode.FAILED;
  }

  /**
   * Feeds the answer's next id. True when it ends the answer: an end id where the answer may end
   * (the state stays). Otherwise the id is text, and the state moves past its bytes (refused:
   * FAILED, or DFA_NONE).
   */
  push(id: number): boolean {
    if (this.#ends.has(id) && this.mayEnd) return true;
    const bytes = this.#bytesOf(id);
    const dfa = this.#dfa;
    if (dfa) {
      const q = this.#state[0];
      this.#state[0] = q === DFA_NONE || bytes.length === 0 ? DFA_NONE : dfaWalk(dfa, q, bytes);
      return false;
    }
    const next = this.#state[0] === Mode.FAILED || bytes.length === 0
      ? undefined
      : stepBytes(this.#state, bytes);
    if (next) this.#state = next;
    else this.#state[0] = Mode.FAILED;
    return false;
  }
}
