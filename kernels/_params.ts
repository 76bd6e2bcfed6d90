/**
 * Kernel parameter structs: one definition gives both the WGSL `struct` text and the byte packing,
 * so the two can never disagree. Every field is a 4-byte scalar, which keeps WGSL's uniform layout
 * rules trivial (offset = 4·index, struct size rounded up to 16).
 * @module
 */

/** A field's WGSL scalar type. */
export type ScalarType = "u32" | "i32" | "f32";

/** A parameter layout built by {@link defineParams}. */
export interface ParamsLayout<F extends Record<string, ScalarType>> {
  readonly fields: F;
  /** Byte size of the packed struct (a multiple of 16, as uniform buffers require). */
  readonly byteSize: number;
  /** `struct Name { a: u32, b: f32 }` for the shader. */
  wgsl(name?: string): string;
  /** Packs values in field order; every field must be given, integers must be integers. */
  pack(values: { [K in keyof F]: number }): ArrayBuffer;
}

/**
 * Defines a params struct.
 * @example
 * ```ts
 * import { defineParams } from "./_params.ts";
 * const P = defineParams({ rows: "u32", eps: "f32" });
 * P.wgsl(); // "struct Params {\n  rows: u32,\n  eps: f32,\n}"
 * P.pack({ rows: 3, eps: 1e-6 }).byteLength; // 16
 * ```
 */
export function defineParams<F extends Record<string, ScalarType>>(fields: F): ParamsLayout<F> {
  const names = Object.keys(fields);
  const byteSize = Math.max(16, Math.ceil((names.length * 4) / 16) * 16);
  return {
    fields,
    byteSize,
    wgsl(name = "Params") {
      return `struct ${name} {\n${names.map((n) => `  ${n}: ${fields[n]},`).join("\n")}\n}`;
    },
    pack(values) {
      const buf = new ArrayBuffer(byteSize);
      const view = new DataView(buf);
      names.forEach((n, i) => {
        const v = (values as Record<string, number>)[n];
        if (typeof v !== "number" || Number.isNaN(v)) {
          throw new TypeError(`params field "${n}" must be a number, got ${v}`);
        }
        const t = fields[n];
        if (t !== "f32" && !Number.isInteger(v)) {
          throw new TypeError(`params field "${n}" is ${t} but got ${v}`);
        }
        if (t === "u32") view.setUint32(i * 4, v, true);
        else if (t === "i32") view.setInt32(i * 4, v, true);
        else view.setFloat32(i * 4, v, true);
      });
      return buf;
    },
  };
}
