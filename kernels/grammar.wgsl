// JSON mode on the GPU (src/generate/json_grammar.ts defines the automaton; this is the same
// automaton, word for word): which tokens may come next, and the state after the one drawn, so a
// constrained answer still decodes with no readback a token.
//
// Two entries:
//   mask    — one thread a vocabulary id: the id is allowed when each of its bytes is accepted in
//             turn from the current state, and an end id also once the object is closed — where
//             it ends the answer; before, an end id that is text (a stop id "e") is text like any
//             other (src/generate/format_tracker.ts follows the same rule on the host). Writes
//             (ceil(vocab / 32)) u32 bits that the sampler's scores_pass reads (#if MASK).
//   advance — one thread: feeds the drawn token (tokens[state.step + ahead], the sampler's ring
//             convention) to the state; a token the state refuses (the sampler's NO_TOKEN or
//             NOT_FINITE, past the vocabulary, which fail the answer) leaves it FAILED, where only
//             end ids are allowed.
// #if DFA the automaton is a table instead (structured outputs; see `walk` below).
//
// The state (8 u32 words, the TypeScript GrammarState): mode, depth, aux, whitespace run, then
// 4 words of stack bits (bit i: level i is an object). aux by mode — strings: bit 0 a key, bits
// 8.. \u digits or UTF-8 bytes to come, bits 12..15 the next UTF-8 byte's range; NUMBER: where in
// the number; LITERAL: literal · 16 + bytes matched.

#include decode_state
struct Grammar {
  s: array<u32, 8>,             // the automaton's state
  end_count: u32,               // ids in `ends`
  pad0: u32,
  pad1: u32,
  pad2: u32,
  ends: array<u32, {{MAX_ENDS}}>,  // the end ids (eos, stop ids): they end it once it is closed
}

@group(0) @binding(0) var<storage, read> offsets: array<u32>;   // (vocab + 1) u32 byte offsets
@group(0) @binding(1) var<storage, read> bytes: array<u32>;     // (total bytes / 4) u32, 4 a word
#if MASK
@group(0) @binding(2) var<storage, read> g: Grammar;
@group(0) @binding(3) var<storage, read_write> allowed: array<u32>; // (ceil(vocab / 32)) u32 bits
#if DFA
@group(0) @binding(4) var<storage, read> dfa: array<u32>;       // (states · 256 + states) u32
#endif
#else
@group(0) @binding(2) var<storage, read_write> g: Grammar;
@group(0) @binding(3) var<storage, read> state: DecodeState;
@group(0) @binding(4) var<storage, read> tokens: array<u32>;    // (capacity) u32 token ring
#if DFA
@group(0) @binding(5) var<storage, read> dfa: array<u32>;       // (states · 256 + states) u32
#endif
#endif
@group(0) @binding({{PARAMS_BINDING}}) var<uniform> p: Params;

const START: u32 = 0u;
const VALUE: u32 = 1u;
const ARRAY_FIRST: u32 = 2u;
const OBJECT_FIRST: u32 = 3u;
const KEY: u32 = 4u;
const COLON: u32 = 5u;
const AFTER: u32 = 6u;
const DONE: u32 = 7u;
const STRING: u32 = 8u;
const ESCAPE: u32 = 9u;
const UNICODE: u32 = 10u;
const UTF8: u32 = 11u;
const NUMBER: u32 = 12u;
const LITERAL: u32 = 13u;
const FAILED: u32 = 14u;

const N_MINUS: u32 = 0u;
const N_ZERO: u32 = 1u;
const N_INT: u32 = 2u;
const N_DOT: u32 = 3u;
const N_FRAC: u32 = 4u;
const N_E: u32 = 5u;
const N_ESIGN: u32 = 6u;
const N_EXP: u32 = 7u;

const MAX_DEPTH: u32 = {{MAX_DEPTH}}u;
const MAX_WS: u32 = {{MAX_WS}}u;

var<private> s: array<u32, 8>;

fn is_ws(b: u32) -> bool { return b == 0x20u || b == 0x09u || b == 0x0au || b == 0x0du; }
fn is_digit(b: u32) -> bool { return b >= 0x30u && b <= 0x39u; }
fn is_hex(b: u32) -> bool {
  return is_digit(b) || (b >= 0x41u && b <= 0x46u) || (b >= 0x61u && b <= 0x66u);
}

// Byte `at` of "true", "false", "null" (literal l); 0 past the end.
fn literal_byte(l: u32, at: u32) -> u32 {
  if (l == 0u) { return (0x65757274u >> (8u * at)) & select(0xffu, 0u, at >= 4u); }
  if (l == 1u) {
    if (at == 4u) { return 0x65u; }
    return (0x736c6166u >> (8u * at)) & select(0xffu, 0u, at >= 5u);
  }
  return (0x6c6c756eu >> (8u * at)) & select(0xffu, 0u, at >= 4u);
}

fn literal_len(l: u32) -> u32 { return select(4u, 5u, l == 1u); }

fn top_is_object() -> bool {
  let i = s[1] - 1u;
  return ((s[4u + (i >> 5u)] >> (i & 31u)) & 1u) == 1u;
}

fn push(object: bool, mode: u32) -> bool {
  let i = s[1];
  if (i >= MAX_DEPTH) { return false; }
  let w = 4u + (i >> 5u);
  let bit = 1u << (i & 31u);
  s[w] = select(s[w] & ~bit, s[w] | bit, object);
  s[1] = i + 1u;
  s[0] = mode;
  return true;
}

fn end_value() {
  s[0] = select(AFTER, DONE, s[1] == 0u);
  s[2] = 0u;
}

fn close(object: bool) -> bool {
  if (s[1] == 0u || top_is_object() != object) { return false; }
  s[1] -= 1u;
  end_value();
  return true;
}

fn value_start(b: u32) -> bool {
  s[2] = 0u;
  if (b == 0x7bu) { return push(true, OBJECT_FIRST); }
  if (b == 0x5bu) { return push(false, ARRAY_FIRST); }
  if (b == 0x22u) {
    s[0] = STRING;
    return true;
  }
  if (b == 0x2du) {
    s[0] = NUMBER;
    s[2] = N_MINUS;
    return true;
  }
  if (b == 0x74u || b == 0x66u || b == 0x6eu) {
    s[0] = LITERAL;
    s[2] = select(select(2u, 1u, b == 0x66u), 0u, b == 0x74u) * 16u + 1u;
    return true;
  }
  if (is_digit(b)) {
    s[0] = NUMBER;
    s[2] = select(N_INT, N_ZERO, b == 0x30u);
    return true;
  }
  return false;
}

fn utf8(key: u32, left: u32, range: u32) -> bool {
  s[0] = UTF8;
  s[2] = key | (left << 8u) | (range << 12u);
  return true;
}

fn string_byte(b: u32) -> bool {
  let key = s[2] & 1u;
  let mode = s[0];
  if (mode == STRING) {
    if (b == 0x22u) {
      if (key != 0u) {
        s[0] = COLON;
        s[2] = 0u;
      } else {
        end_value();
      }
      return true;
    }
    if (b == 0x5cu) {
      s[0] = ESCAPE;
      return true;
    }
    if (b < 0x20u) { return false; }
    if (b < 0x80u) { return true; }
    if (b >= 0xc2u && b <= 0xdfu) { return utf8(key, 1u, 0u); }
    if (b >= 0xe0u && b <= 0xefu) {
      return utf8(key, 2u, select(select(0u, 2u, b == 0xedu), 1u, b == 0xe0u));
    }
    if (b >= 0xf0u && b <= 0xf4u) {
      return utf8(key, 3u, select(select(0u, 4u, b == 0xf4u), 3u, b == 0xf0u));
    }
    return false;
  }
  if (mode == ESCAPE) {
    if (b == 0x75u) {
      s[0] = UNICODE;
      s[2] = key | (4u << 8u);
      return true;
    }
    if (b == 0x22u || b == 0x5cu || b == 0x2fu || b == 0x62u || b == 0x66u || b == 0x6eu ||
      b == 0x72u || b == 0x74u) {
      s[0] = STRING;
      return true;
    }
    return false;
  }
  if (mode == UNICODE) {
    if (!is_hex(b)) { return false; }
    let left = (s[2] >> 8u) - 1u;
    s[2] = key | (left << 8u);
    if (left == 0u) { s[0] = STRING; }
    return true;
  }
  // UTF8: the next byte's range (RFC 3629; the TypeScript RANGES).
  let r = (s[2] >> 12u) & 15u;
  var lo = 0x80u;
  var hi = 0xbfu;
  if (r == 1u) { lo = 0xa0u; }
  if (r == 2u) { hi = 0x9fu; }
  if (r == 3u) { lo = 0x90u; }
  if (r == 4u) { hi = 0x8fu; }
  if (b < lo || b > hi) { return false; }
  let left = ((s[2] >> 8u) & 15u) - 1u;
  if (left == 0u) {
    s[0] = STRING;
    s[2] = key;
  } else {
    s[2] = key | (left << 8u);
  }
  return true;
}

// 1: taken, 0: refused, 2: the number ended before b (read b again in the mode it left).
fn number_byte(b: u32) -> u32 {
  let at = s[2];
  let e = b == 0x65u || b == 0x45u;
  if (at == N_MINUS) {
    s[2] = select(N_INT, N_ZERO, b == 0x30u);
    return select(0u, 1u, is_digit(b));
  }
  if (at == N_ZERO || at == N_INT) {
    if (at == N_INT && is_digit(b)) { return 1u; }
    if (b == 0x2eu) {
      s[2] = N_DOT;
      return 1u;
    }
    if (e) {
      s[2] = N_E;
      return 1u;
    }
  } else if (at == N_DOT) {
    s[2] = N_FRAC;
    return select(0u, 1u, is_digit(b));
  } else if (at == N_FRAC) {
    if (is_digit(b)) { return 1u; }
    if (e) {
      s[2] = N_E;
      return 1u;
    }
  } else if (at == N_E) {
    if (b == 0x2bu || b == 0x2du) {
      s[2] = N_ESIGN;
      return 1u;
    }
    s[2] = N_EXP;
    return select(0u, 1u, is_digit(b));
  } else if (at == N_ESIGN) {
    s[2] = N_EXP;
    return select(0u, 1u, is_digit(b));
  } else if (is_digit(b)) { // N_EXP
    return 1u;
  }
  if (is_digit(b)) { return 0u; }
  end_value();
  return 2u;
}

fn step_byte(b: u32) -> bool {
  let mode = s[0];
  if (mode >= STRING && mode <= UTF8) { return string_byte(b); }
  if (mode == NUMBER) {
    let r = number_byte(b);
    if (r != 2u) { return r == 1u; }
  } else if (mode == LITERAL) {
    let l = s[2] >> 4u;
    let at = s[2] & 15u;
    if (b != literal_byte(l, at)) { return false; }
    s[2] += 1u;
    if (at + 1u == literal_len(l)) { end_value(); }
    return true;
  }
  if (is_ws(b)) {
    if (s[0] < VALUE || s[0] > AFTER || s[3] >= MAX_WS) { return false; }
    s[3] += 1u;
    return true;
  }
  s[3] = 0u;
  switch (s[0]) {
    case 0u: { // START
      return b == 0x7bu && push(true, OBJECT_FIRST);
    }
    case 2u: { // ARRAY_FIRST
      if (b == 0x5du) { return close(false); }
      return value_start(b);
    }
    case 1u: { // VALUE
      return value_start(b);
    }
    case 3u, 4u: { // OBJECT_FIRST, KEY
      if (s[0] == OBJECT_FIRST && b == 0x7du) { return close(true); }
      if (b != 0x22u) { return false; }
      s[0] = STRING;
      s[2] = 1u;
      return true;
    }
    case 5u: { // COLON
      if (b != 0x3au) { return false; }
      s[0] = VALUE;
      return true;
    }
    case 6u: { // AFTER
      if (b == 0x2cu) {
        s[0] = select(VALUE, KEY, top_is_object());
        return true;
      }
      if (b == 0x7du || b == 0x5du) { return close(b == 0x7du); }
      return false;
    }
    default: {
      return false;
    }
  }
}

fn byte_at(i: u32) -> u32 { return (bytes[i >> 2u] >> (8u * (i & 3u))) & 0xffu; }

fn is_end(id: u32) -> bool {
  for (var i = 0u; i < g.end_count; i++) {
    if (g.ends[i] == id) { return true; }
  }
  return false;
}

// Feeds token id's bytes to s; false at the first byte refused (or for a token with none).
fn feed(id: u32) -> bool {
  let a = offsets[id];
  let b = offsets[id + 1u];
  if (a == b) { return false; }
  for (var i = a; i < b; i++) {
    if (!step_byte(byte_at(i))) { return false; }
  }
  return true;
}

#if DFA
// #if DFA (structured outputs: a JSON schema or a choice list, src/generate/json_schema.ts): the
// state is one DFA state in s[0] (NONE once a refused token was drawn: only end ids then);
// dfa[q · 256 + b] the state after byte b (NONE: refused), dfa[p.states · 256 + q] 1 where the
// answer may end. An accepting state allows the end ids and whatever goes on from it.
const NONE: u32 = 0xffffffffu;

fn accepts(q: u32) -> bool { return q != NONE && dfa[p.states * 256u + q] == 1u; }

// The state after token id's bytes from q; NONE for one refused, or a token with none.
fn walk(q0: u32, id: u32) -> u32 {
  let a = offsets[id];
  let b = offsets[id + 1u];
  var q = select(q0, NONE, a == b);
  for (var i = a; i < b && q != NONE; i++) { q = dfa[q * 256u + byte_at(i)]; }
  return q;
}

// Whether id may come next from state q: an end id where the answer may end (it ends it there),
// and any id, an end id too, whose bytes go on from q (a stop id that is text is text where the
// answer may not end: holding it back left no token where the format needed its text).
fn allows(q: u32, id: u32) -> bool {
  if (is_end(id) && (q == NONE || accepts(q))) { return true; }
  return q != NONE && walk(q, id) != NONE;
}

// The state after id is drawn from q: unchanged for an end id where the answer may end.
fn after(q: u32, id: u32) -> u32 {
  if ((q == NONE || accepts(q)) && is_end(id)) { return q; }
  if (q == NONE || id >= p.vocab) { return NONE; }
  return walk(q, id);
}
#else
// Whether id may come next from the automaton's state g.s: an end id once the object is closed (it
// ends the answer there), and any id, an end id too, whose bytes go on from the state (a stop id
// that is text is text before the object is closed: held back, it could leave no token).
fn allows(id: u32) -> bool {
  let mode = g.s[0];
  if (is_end(id) && (mode == DONE || mode == FAILED)) { return true; }
  if (mode == FAILED) { return false; }
  s = g.s;
  return feed(id);
}
#endif

#if MASK
var<workgroup> bits: array<atomic<u32>, 8>;

@compute @workgroup_size(256)
fn mask(@builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  if (lid < 8u) { atomicStore(&bits[lid], 0u); }
  workgroupBarrier();
  let id = gid.x;
#if DFA
  let ok = id < p.vocab && allows(g.s[0], id);
#else
  let ok = id < p.vocab && allows(id);
#endif
  if (ok) { atomicOr(&bits[lid >> 5u], 1u << (lid & 31u)); }
  workgroupBarrier();
  let w = wid.x * 8u + lid;
  if (lid < 8u && w * 32u < p.vocab) { allowed[w] = atomicLoad(&bits[lid]); }
}
#else
@compute @workgroup_size(1)
fn advance() {
  let w = state.step + p.ahead;
  if (w >= arrayLength(&tokens)) { return; }   // past the ring: the sampler wrote nothing
  let id = tokens[w];
#if DFA
  g.s[0] = after(g.s[0], id);
#else
  let mode = g.s[0];
  if ((mode == DONE || mode == FAILED) && is_end(id)) { return; }
  s = g.s;
  if (id >= p.vocab || !feed(id)) {
    g.s[0] = FAILED;
    return;
  }
  g.s = s;
#endif
}
#endif
