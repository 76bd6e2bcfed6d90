/**
 * JSON mode (OpenAI's `response_format: {"type": "json_object"}`): a byte-level JSON automaton
 * that decides, before each token is drawn, which vocabulary entries may come next, so the answer
 * is always the start of a JSON object (RFC 8259) and ends — an end id allowed — only once the
 * object is closed.
 *
 * The automaton's whole state is eight u32 words ({@link GRAMMAR_STATE_WORDS}), the same words the
 * GPU kernels (kernels/grammar.wgsl) read and write, so this file is both the CPU side (the
 * initial state, a continued answer's state, the token table) and the definition the kernel is
 * tested against (src/ref/grammar.ts). A token is allowed when every one of its bytes is accepted
 * in turn from the current state; special tokens (no bytes) only as end ids, and only once the
 * object is complete.
 *
 * Limits, as llama.cpp's json.gbnf has its own: the answer is the object's text (no whitespace
 * before or after it), at most {@link MAX_JSON_DEPTH} nested containers and {@link MAX_JSON_WHITESPACE}
 * whitespace bytes in a row outside strings (a model cannot pad forever; pretty-printed JSON
 * stays well inside). Strings must be valid UTF-8 (no overlong forms,
 * no surrogates, nothing past U+10FFFF), control characters escaped.
 * @module
 */
import type { Tokenizer } from "../tokenizer.ts";
import { tokenText } from "./logprobs.ts";

/** u32 words of the automaton's state: mode, depth, aux, whitespace run, 4 words of stack bits. */
export const GRAMMAR_STATE_WORDS = 8;
/** Most containers open at once (one stack bit each: 1 object, 0 array). */
export const MAX_JSON_DEPTH = 128;
/** Most whitespace bytes in a row outside strings. */
export const MAX_JSON_WHITESPACE = 64;

/** The automaton's modes (word 0 of the state); the kernel's constants are the same numbers. */
export const Mode = {
  /** Before the top-level object: `{` (no whitespace first: the answer is the object's text). */
  START: 0,
  /** A value must come (after `:` or an array's `,`). */
  VALUE: 1,
  /** After `[`: a value or `]`. */
  ARRAY_FIRST: 2,
  /** After `{`: a key or `}`. */
  OBJECT_FIRST: 3,
  /** After an object's `,`: a key. */
  KEY: 4,
  /** After a key: `:`. */
  COLON: 5,
  /** After a value in a container: `,` or the container's close. */
  AFTER: 6,
  /** The object is closed: an end id. */
  DONE: 7,
  /** In a string (aux bit 0: it is a key). */
  STRING: 8,
  /** After a backslash in a string. */
  ESCAPE: 9,
  /** In a \u escape (aux bits 8..: hex digits still to come). */
  UNICODE: 10,
  /** In a multi-byte UTF-8 character (aux bits 8..11: bytes to come, 12..15: the next's range). */
  UTF8: 11,
  /** In a number (aux: where in its syntax). */
  NUMBER: 12,
  /** In true / false / null (aux: literal · 16 + bytes matched). */
  LITERAL: 13,
  /**
   * A token the automaton refuses was fed (the sampler's ids for no token, past the vocabulary,
   * which fail the answer): only end ids.
   */
  FAILED: 14,
} as const;

/** Where in a number (aux of NUMBER). */
const Num = { MINUS: 0, ZERO: 1, INT: 2, DOT: 3, FRAC: 4, E: 5, ESIGN: 6, EXP: 7 } as const;
/** The three literals, by aux · 16 index. */
const LITERALS = ["true", "false", "null"].map((s) => [...s].map((c) => c.charCodeAt(0)));
/**
 * Byte ranges of a UTF-8 character's second byte (aux bits 12..15), RFC 3629: after E0, ED, F0,
 * F4 narrower than 80..BF, which rules out overlong forms, surrogates and code points past 10FFFF.
 */
const RANGES: readonly (readonly [number, number])[] = [
  [0x80, 0xbf],
  [0xa0, 0xbf],
  [0x80, 0x9f],
  [0x90, 0xbf],
  [0x80, 0x8f],
];

/** A state: {@link GRAMMAR_STATE_WORDS} u32 words, as the GPU holds it. */
export type GrammarState = Uint32Array;

/** The state before the first byte of an answer. */
export function initialState(): GrammarState {
  return new Uint32Array(GRAMMAR_STATE_WORDS);
}

const isWs = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);

/** Whether the innermost open container is an object. */
function topIsObject(s: GrammarState): boolean {
  const i = s[1] - 1;
  return ((s[4 + (i >> 5)] >>> (i & 31)) & 1) === 1;
}

/** Opens a container (false past MAX_JSON_DEPTH). */
function push(s: GrammarState, object: boolean, mode: number): boolean {
  const i = s[1];
  if (i >= MAX_JSON_DEPTH) return false;
  const w = 4 + (i >> 5), bit = 1 << (i & 31);
  s[w] = object ? s[w] | bit : s[w] & ~bit;
  s[1] = i + 1;
  s[0] = mode;
  return true;
}

/** A value just ended: back in its container, or done at the top. */
function endValue(s: GrammarState): void {
  s[0] = s[1] === 0 ? Mode.DONE : Mode.AFTER;
  s[2] = 0;
}

/** Closes the innermost container with `}` (object) or `]`; false if it is the other kind. */
function close(s: GrammarState, object: boolean): boolean {
  if (s[1] === 0 || topIsObject(s) !== object) return false;
  s[1] -= 1;
  endValue(s);
  return true;
}

/** The first byte of a value (modes VALUE and ARRAY_FIRST). */
function valueStart(s: GrammarState, b: number): boolean {
  s[2] = 0;
  switch (b) {
    case 0x7b: // {
      return push(s, true, Mode.OBJECT_FIRST);
    case 0x5b: // [
      return push(s, false, Mode.ARRAY_FIRST);
    case 0x22: // "
      s[0] = Mode.STRING;
      return true;
    case 0x2d: // -
      s[0] = Mode.NUMBER;
      s[2] = Num.MINUS;
      return true;
    case 0x74: // t
    case 0x66: // f
    case 0x6e: // n
      s[0] = Mode.LITERAL;
      s[2] = (b === 0x74 ? 0 : b === 0x66 ? 1 : 2) * 16 + 1;
      return true;
  }
  if (isDigit(b)) {
    s[0] = Mode.NUMBER;
    s[2] = b === 0x30 ? Num.ZERO : Num.INT;
    return true;
  }
  return false;
}

/** A byte of a string (modes STRING, ESCAPE, UNICODE, UTF8); aux bit 0 (a key) is kept. */
function stringByte(s: GrammarState, b: number): boolean {
  const key = s[2] & 1;
  switch (s[0]) {
    case Mode.STRING:
      if (b === 0x22) {
        if (key) {
          s[0] = Mode.COLON;
          s[2] = 0;
        } else endValue(s);
        return true;
      }
      if (b === 0x5c) {
        s[0] = Mode.ESCAPE;
        return true;
      }
      if (b < 0x20) return false;
      if (b < 0x80) return true;
      if (b >= 0xc2 && b <= 0xdf) return utf8(s, key, 1, 0);
      if (b >= 0xe0 && b <= 0xef) return utf8(s, key, 2, b === 0xe0 ? 1 : b === 0xed ? 2 : 0);
      if (b >= 0xf0 && b <= 0xf4) return utf8(s, key, 3, b === 0xf0 ? 3 : b === 0xf4 ? 4 : 0);
      return false;
    case Mode.ESCAPE:
      if (b === 0x75) { // u
        s[0] = Mode.UNICODE;
        s[2] = key | (4 << 8);
        return true;
      }
      // " \ / b f n r t
      if ([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74].includes(b)) {
        s[0] = Mode.STRING;
        return true;
      }
      return false;
    case Mode.UNICODE: {
      if (!isHex(b)) return false;
      const left = (s[2] >>> 8) - 1;
      s[2] = key | (left << 8);
      if (left === 0) s[0] = Mode.STRING;
      return true;
    }
    default: { // UTF8
      const [lo, hi] = RANGES[(s[2] >>> 12) & 15];
      if (b < lo || b > hi) return false;
      const left = ((s[2] >>> 8) & 15) - 1;
      if (left === 0) {
        s[0] = Mode.STRING;
        s[2] = key;
      } else s[2] = key | (left << 8);
      return true;
    }
  }
}

function utf8(s: GrammarState, key: number, left: number, range: number): boolean {
  s[0] = Mode.UTF8;
  s[2] = key | (left << 8) | (range << 12);
  return true;
}

/**
 * A byte of a number. Returns 1 when taken, 0 when refused, and 2 when the number has ended
 * before this byte (which the caller then reads in the mode it left).
 */
function numberByte(s: GrammarState, b: number): 0 | 1 | 2 {
  const at = s[2];
  const to = (n: number): 1 => {
    s[2] = n;
    return 1;
  };
  switch (at) {
    case Num.MINUS:
      return b === 0x30 ? to(Num.ZERO) : isDigit(b) ? to(Num.INT) : 0;
    case Num.ZERO:
    case Num.INT:
      if (at === Num.INT && isDigit(b)) return 1;
      if (b === 0x2e) return to(Num.DOT);
      if (b === 0x65 || b === 0x45) return to(Num.E);
      break;
    case Num.DOT:
      return isDigit(b) ? to(Num.FRAC) : 0;
    case Num.FRAC:
      if (isDigit(b)) return 1;
      if (b === 0x65 || b === 0x45) return to(Num.E);
      break;
    case Num.E:
      return b === 0x2b || b === 0x2d ? to(Num.ESIGN) : isDigit(b) ? to(Num.EXP) : 0;
    case Num.ESIGN:
      return isDigit(b) ? to(Num.EXP) : 0;
    default: // EXP
      if (isDigit(b)) return 1;
  }
  // A digit after a leading zero is no number; anything else ends it.
  if (isDigit(b)) return 0;
  endValue(s);
  return 2;
}

/**
 * Feeds one byte; false if no JSON object can continue with it (the state is then undefined:
 * step a copy when testing a token).
 */
export function stepByte(s: GrammarState, b: number): boolean {
  const mode = s[0];
  if (mode >= Mode.STRING && mode <= Mode.UTF8) return stringByte(s, b);
  if (mode === Mode.NUMBER) {
    const r = numberByte(s, b);
    if (r !== 2) return r === 1;
  } else if (mode === Mode.LITERAL) {
    const lit = LITERALS[s[2] >>> 4], at = s[2] & 15;
    if (b !== lit[at]) return false;
    s[2] += 1;
    if (at + 1 === lit.length) endValue(s);
    return true;
  }
  // Structural modes (a number that just ended lands here in AFTER or DONE).
  if (isWs(b)) {
    // Inside the object only: the answer is the object's text, nothing before or after it.
    if (s[0] < Mode.VALUE || s[0] > Mode.AFTER || s[3] >= MAX_JSON_WHITESPACE) return false;
    s[3] += 1;
    return true;
  }
  s[3] = 0;
  switch (s[0]) {
    case Mode.START:
      return b === 0x7b && push(s, true, Mode.OBJECT_FIRST);
    case Mode.ARRAY_FIRST:
      if (b === 0x5d) return close(s, false);
      return valueStart(s, b);
    case Mode.VALUE:
      return valueStart(s, b);
    case Mode.OBJECT_FIRST:
      if (b === 0x7d) return close(s, true);
      /* falls through */
    case Mode.KEY:
      if (b !== 0x22) return false;
      s[0] = Mode.STRING;
      s[2] = 1;
      return true;
    case Mode.COLON:
      if (b !== 0x3a) return false;
      s[0] = Mode.VALUE;
      return true;
    case Mode.AFTER:
      if (b === 0x2c) {
        s[0] = topIsObject(s) ? Mode.KEY : Mode.VALUE;
        return true;
      }
      if (b === 0x7d || b === 0x5d) return close(s, b === 0x7d);
      return false;
  }
  return false; // DONE, FAILED
}

/** Feeds `bytes` to a copy of `s`: the state after them, or undefined if one is refused. */
export function stepBytes(s: GrammarState, bytes: ArrayLike<number>): GrammarState | undefined {
  const t = s.slice();
  for (let i = 0; i < bytes.length; i++) if (!stepByte(t, bytes[i])) return undefined;
  return t;
}

/** Whether the answer so far is a whole JSON object (an end id may come). */
export function isComplete(s: GrammarState): boolean {
  return s[0] === Mode.DONE;
}

/**
 * The state after `text` (a continued answer's start, continue_final_message), or undefined if
 * it is not the start of a JSON object.
 */
export function stateAfter(text: string): GrammarState | undefined {
  return stepBytes(initialState(), new TextEncoder().encode(text));
}

/**
 * Every vocabulary entry's bytes, packed for the GPU: entry i is bytes[offsets[i] .. offsets[i+1])
 * of `bytes` (four to a u32, little-endian). Special and added tokens, and ids past the
 * tokenizer's vocabulary up to `vocab` (the lm_head's padding rows), have none.
 */
export interface TokenTable {
  /** (vocab + 1) u32 byte offsets. */
  offsets: Uint32Array;
  /** (ceil(total bytes / 4)) u32. */
  bytes: Uint32Array;
  vocab: number;
}

/** The entry of token `id` in `table` (for tests and the CPU reference). */
export function tokenBytes(table: TokenTable, id: number): Uint8Array {
  const all = new Uint8Array(table.bytes.buffer, table.bytes.byteOffset, table.bytes.byteLength);
  return all.subarray(table.offsets[id], table.offsets[id + 1]);
}

/** Packs per-id byte strings (undefined or empty: no bytes) into a {@link TokenTable}. */
export function packTokenTable(
  vocab: number,
  bytesOf: (id: number) => ArrayLike<number> | undefined,
): TokenTable {
  const offsets = new Uint32Array(vocab + 1);
  const parts: ArrayLike<number>[] = [];
  let total = 0;
  for (let id = 0; id < vocab; id++) {
    const b = bytesOf(id) ?? [];
    parts.push(b);
    offsets[id] = total;
    total += b.length;
  }
  offsets[vocab] = total;
  const bytes = new Uint32Array(Math.max(1, Math.ceil(total / 4)));
  const view = new Uint8Array(bytes.buffer);
  parts.forEach((b, id) => view.set(b as ArrayLike<number>, offsets[id]));
  return { offsets, bytes, vocab };
}

/**
 * The token table of `tokenizer` over a `vocab`-row lm_head: each id's bytes as the answer's text
 * holds them (src/generate/logprobs.ts tokenText); special tokens (`<|im_end|>`,
 * `<|vision_start|>`, …) and padding ids get none, so JSON mode never draws them (the end ids are
 * allowed apart, once the object is closed).
 */
export function tokenTable(tokenizer: Tokenizer, vocab: number): TokenTable {
  return packTokenTable(vocab, (id) => tokenText(tokenizer, id).bytes);
}
