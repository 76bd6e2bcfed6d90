/**
 * Workgroup grids. A dimension is capped at 65535 workgroups, so a long list of rows (a 152064-row
 * lm_head, 5120 vision patches × heads) is laid out as x + 65535·y; shaders recover the index as
 * `wid.x + wid.y * 65535u` and skip the overhang.
 * @module
 */

/** Grid for `n` workgroups as (min(n, 65535), ceil(n / 65535)). */
export function grid2d(n: number): [number, number] {
  return n <= 65535 ? [n, 1] : [65535, Math.ceil(n / 65535)];
}
