/**
 * Small promise helpers shared by the pipeline and the server.
 * @module
 */

/**
 * `first`'s value if it settles within `ms`, else undefined (a rejection is passed on); the
 * timer is cleared either way, so nothing is left pending.
 */
export async function within<T>(first: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([first, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
