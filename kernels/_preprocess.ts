/**
 * The one small WGSL preprocessor: `#if NAME`, `#ifnot NAME`, `#else`, `#endif` keep or drop
 * lines by boolean defines, and `{{NAME}}` is replaced by a define's text. Kernel variants (weight
 * dtype, vector width) are defines; numbers that vary per call go in params instead.
 * @module
 */

/** Define values: booleans for `#if`, strings/numbers for `{{NAME}}`. */
export type Defines = Record<string, boolean | string | number>;

/** Expands `src` with `defines`; throws on unbalanced blocks or an unknown `{{NAME}}`. */
export function preprocess(src: string, defines: Defines = {}): string {
  const out: string[] = [];
  // Whether the enclosing block was active, one entry per open #if.
  const stack: boolean[] = [];
  let active = true;
  src.split("\n").forEach((line, i) => {
    const t = line.trim();
    const m = /^#(if|ifnot)\s+(\w+)$/.exec(t);
    if (m) {
      const v = Boolean(defines[m[2]]);
      stack.push(active);
      active = active && (m[1] === "if" ? v : !v);
      return;
    }
    if (t === "#else") {
      if (!stack.length) throw new Error(`WGSL preprocess: #else without #if at line ${i + 1}`);
      active = stack[stack.length - 1] && !active;
      return;
    }
    if (t === "#endif") {
      if (!stack.length) throw new Error(`WGSL preprocess: #endif without #if at line ${i + 1}`);
      active = stack.pop()!;
      return;
    }
    if (!active) return;
    out.push(
      line.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
        if (!(name in defines)) throw new Error(`WGSL preprocess: no define for {{${name}}}`);
        return String(defines[name]);
      }),
    );
  });
  if (stack.length) throw new Error("WGSL preprocess: #if without #endif");
  return out.join("\n");
}
