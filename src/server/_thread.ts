/**
 * When a worker's thread has really ended. A worker's last message, and its self.close() or
 * terminate(), come before its thread tears down what it held — a WebGPU instance, for the engine's
 * worker — and a process that exits during that teardown crashes in NVIDIA's Vulkan driver (H200,
 * 2026-11-29, a worker that destroyed its device and closed: the process exited with a segmentation
 * fault 3 times in 3 when it exited on the worker's last message, 0 in 3 a second later, and 0 in 3
 * while the worker still lived). So the worker tells its host where its thread is, and the host
 * waits for the thread to be gone.
 * @module
 */

/** How long {@link threadExited} waits for a thread it can see (ms). */
export const THREAD_EXIT_TIMEOUT_MS = 10_000;

/**
 * How long {@link threadExited} waits where it cannot see the thread (no /proc, or no permission to
 * read it): longer than the teardowns measured.
 */
export const THREAD_EXIT_GRACE_MS = 1_000;

/**
 * The calling thread's entry under /proc ("/proc/<pid>/task/<tid>"), or null where there is none
 * to read (not Linux; reading /proc/thread-self takes Deno's --allow-all).
 */
export function currentThread(): string | null {
  try {
    return `/proc/${Deno.readLinkSync("/proc/thread-self")}`;
  } catch {
    return null;
  }
}

/**
 * Resolves once the thread whose {@link currentThread} entry is `entry` has exited: its entry is
 * gone (checked every 5 ms, for at most `timeoutMs`; then false). Without an entry it waits
 * {@link THREAD_EXIT_GRACE_MS} and resolves false.
 */
export async function threadExited(
  entry: string | null,
  timeoutMs = THREAD_EXIT_TIMEOUT_MS,
): Promise<boolean> {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  if (entry === null) {
    await sleep(THREAD_EXIT_GRACE_MS);
    return false;
  }
  const end = performance.now() + timeoutMs;
  for (;;) {
    try {
      Deno.statSync(entry);
    } catch {
      return true;
    }
    if (performance.now() >= end) return false;
    await sleep(5);
  }
}
