import { dfaAccepts, regexDfa, utf8Sequences } from "./src/generate/json_schema.ts";
const show = (p: string, texts: string[] = []) => {
  const t0 = performance.now();
  try { const d = regexDfa(p); console.log(JSON.stringify(p), d.states, (performance.now()-t0).toFixed(0)+"ms", texts.map((t) => `${JSON.stringify(t)}:${dfaAccepts(d, t)}`).join(" ")); }
  catch (e) { console.log(JSON.stringify(p), "ERR", (e as Error).message.slice(0, 100)); }
};
show("[\\u4e00-\\u9fff]+", ["中文", "中a", "", "😀"]);
show("[^，。]+", ["你好", "你，", "abc"]);
show("[^a]", ["b", "é", "😀", "a", "\uFFFD"]);
show(".", ["\n", "😀", "\u2028"]);
show("[à-ÿ]{2}", ["éü", "ea"]);
show("[\\x00-\\x{10}]");
// exhaustive utf8Sequences check over random ranges
let bad = 0;
for (let k = 0; k < 300; k++) {
  const lo = Math.floor(Math.random() * 0x11000) , hi = lo + Math.floor(Math.random() * 5000);
  const seqs = utf8Sequences(lo, Math.min(hi, 0x10ffff));
  for (let cp = lo; cp <= Math.min(hi, 0x10ffff); cp += 7) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const e = new TextEncoder().encode(String.fromCodePoint(cp));
    const n = seqs.filter((s) => s.length === e.length && s.every(([a, b], i) => e[i] >= a && e[i] <= b)).length;
    if (n !== 1) bad++;
  }
}
console.log("utf8Sequences mismatches", bad);
