/**
 * The Hugging Face hub cache layout, as huggingface_hub writes it, so a cache filled by Python
 * (transformers, `hf download`) is reused and vice versa:
 *
 * ```text
 * <cache>/models--Org--Name/
 *   blobs/<etag>                      file contents, named by the hub's ETag (sha256 for LFS files)
 *   blobs/<etag>.incomplete           a download in progress (resumed from its length)
 *   refs/<revision>                   the commit hash a branch or tag pointed to
 *   snapshots/<commit>/<file>         relative symlinks to ../../blobs/<etag>
 * ```
 * @module
 */
import { join } from "node:path";

/** huggingface_hub's home: `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`. */
export function hfHome(env: (name: string) => string | undefined): string {
  return env("HF_HOME") ??
    join(
      env("XDG_CACHE_HOME") ?? join(env("HOME") ?? env("USERPROFILE") ?? ".", ".cache"),
      "huggingface",
    );
}

/** The cache root: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
export function defaultCacheDir(env: (name: string) => string | undefined): string {
  return env("HF_HUB_CACHE") || join(hfHome(env), "hub");
}

/** Paths of one model repository in the cache. */
export class RepoCache {
  /** `<cache>/models--Org--Name`. */
  readonly dir: string;

  constructor(cacheDir: string, readonly repoId: string) {
    this.dir = join(cacheDir, `models--${repoId.replaceAll("/", "--")}`);
  }

  blob(etag: string): string {
    return join(this.dir, "blobs", etag);
  }

  snapshot(commit: string): string {
    return join(this.dir, "snapshots", commit);
  }

  /** The commit `revision` pointed to when last resolved, if recorded. */
  async readRef(revision: string): Promise<string | undefined> {
    if (/^[0-9a-f]{40}$/.test(revision)) return revision;
    try {
      return (await Deno.readTextFile(join(this.dir, "refs", revision))).trim();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
  }

  /** Records that `revision` (a branch or tag; commit hashes need no ref) is at `commit`. */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const path = join(this.dir, "refs", revision);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    await Deno.writeTextFile(path, commit);
  }

  /**
   * Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink (so the cache can
   * move). A pointer already at that blob is left alone; another is replaced by a rename, so a
   * process reading the snapshot meanwhile never finds the file missing, and two processes linking
   * the same file do not collide. Where symlinks are not allowed (Windows without developer mode)
   * the blob is copied instead.
   */
  async link(commit: string, file: string, etag: string): Promise<string> {
    const pointer = join(this.snapshot(commit), file);
    await Deno.mkdir(join(pointer, ".."), { recursive: true });
    const depth = file.split("/").length + 1; // up from snapshots/<commit>/<dirs...>
    const target = [...Array(depth).fill(".."), "blobs", etag].join("/");
    if (await Deno.readLink(pointer).catch(() => undefined) === target) return pointer;
    const tmp = `${pointer}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.symlink(target, tmp);
    } catch (error) {
      if (
        !(error instanceof Deno.errors.PermissionDenied ||
          error instanceof Deno.errors.NotSupported)
      ) throw error;
      await Deno.copyFile(this.blob(etag), tmp);
    }
    await Deno.rename(tmp, pointer);
    return pointer;
  }
}

/** The size of the file at `path`, or undefined if there is none. */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}
