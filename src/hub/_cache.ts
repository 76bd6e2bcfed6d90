/**
 * The Hugging Face hub cache layout, as huggingface_hub writes it, so a cache filled by Python
 * (transformers, `hf download`) is reused and vice versa:
 *
 * ```text
 * <cache>/models--Org--Name/
 *   blobs/<etag>                      file contents, named by the hub's ETag (sha256 for LFS files)
 *   blobs/<etag>.incomplete           a download in progress (resumed from its length)
 *   refs/<revision>                   the commit hash a branch or tag pointed to
 *   snapshots/<commit>/<file>         relative symlinks to ../../blobs/<etag> (where symlinks
 *                                     cannot be made: the file itself, its blob moved there)
 * ```
 * @module
 */
import { join } from "node:path";

/** A variable's value as huggingface_hub reads a path from it: `~` and `$VAR` / `${VAR}` expanded. */
export function expandPath(path: string, env: (name: string) => string | undefined): string {
  // os.path.expanduser: a leading ~ (or ~/…) is the home directory.
  const home = env("HOME") ?? env("USERPROFILE");
  let p = home !== undefined && /^~(?=$|[\\/])/.test(path) ? home + path.slice(1) : path;
  // os.path.expandvars: $NAME and ${NAME} of set variables; unset ones stay as written.
  p = p.replace(/\$(\w+)|\$\{([^}]*)\}/g, (m, a, b) => env(a ?? b) ?? m);
  return p;
}

/**
 * huggingface_hub's home: `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else
 * `~/.cache/huggingface` (expanded as a path, as huggingface_hub's constants.py does).
 */
export function hfHome(env: (name: string) => string | undefined): string {
  return expandPath(
    env("HF_HOME") ??
      join(
        env("XDG_CACHE_HOME") ?? join(env("HOME") ?? env("USERPROFILE") ?? ".", ".cache"),
        "huggingface",
      ),
    env,
  );
}

/**
 * The cache root: `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`,
 * else `~/.cache/huggingface/hub`.
 */
export function defaultCacheDir(env: (name: string) => string | undefined): string {
  const set = env("HF_HUB_CACHE") || env("HUGGINGFACE_HUB_CACHE");
  return set ? expandPath(set, env) : join(hfHome(env), "hub");
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

  /**
   * Records that `revision` (a branch or tag; commit hashes need no ref) is at `commit` — only
   * where it changed (a read-only cache that already says so is fine, as in huggingface_hub), and
   * by a rename, so a reader never sees it half written.
   */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit || await this.readRef(revision) === commit) return;
    const path = join(this.dir, "refs", revision);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    const tmp = `${path}.${crypto.randomUUID()}.tmp`;
    await Deno.writeTextFile(tmp, commit);
    await Deno.rename(tmp, path);
  }

  /**
   * Whether `snapshots/<commit>/<file>` is already as {@link link} leaves it: a link to the blob, or
   * a file of its size (huggingface_hub's copy without symlinks). Nothing is written to find out,
   * so a complete cache on a read-only volume is used as it is.
   */
  async linked(
    commit: string,
    file: string,
    blob: { etag: string; size: number },
  ): Promise<boolean> {
    const pointer = join(this.snapshot(commit), file);
    const now = await Deno.lstat(pointer).catch(() => undefined);
    if (now?.isFile) return now.size === blob.size;
    if (!now?.isSymlink) return false;
    const depth = file.split("/").length + 1; // up from snapshots/<commit>/<dirs...>
    const target = [...Array(depth).fill(".."), "blobs", blob.etag].join("/");
    return await Deno.readLink(pointer).catch(() => undefined) === target;
  }

  /**
   * Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink (so the cache can
   * move). A pointer already at that blob is left alone, and so is a file of the blob's `size`
   * there: huggingface_hub's copy where it could not (or was told not to: `symlinks` false, its
   * HF_HUB_DISABLE_SYMLINKS) make symlinks. Another pointer is replaced by a rename, so a process
   * reading the snapshot meanwhile never finds the file missing, and two processes linking the
   * same file do not collide. Without symlinks the blob itself moves into the snapshot where it
   * was just downloaded for this file alone (`fresh`), as huggingface_hub moves it, else is copied.
   */
  async link(
    commit: string,
    file: string,
    blob: { etag: string; size: number; fresh?: boolean },
    symlinks = true,
  ): Promise<string> {
    const pointer = join(this.snapshot(commit), file);
    if (await this.linked(commit, file, blob)) return pointer;
    await Deno.mkdir(join(pointer, ".."), { recursive: true });
    const depth = file.split("/").length + 1; // up from snapshots/<commit>/<dirs...>
    const target = [...Array(depth).fill(".."), "blobs", blob.etag].join("/");
    const tmp = `${pointer}.${crypto.randomUUID()}.tmp`;
    try {
      if (!symlinks) throw new Deno.errors.NotSupported("symlinks are turned off");
      await Deno.symlink(target, tmp);
    } catch (error) {
      if (
        !(error instanceof Deno.errors.PermissionDenied ||
          error instanceof Deno.errors.NotSupported)
      ) throw error;
      try {
        if (blob.fresh) await Deno.rename(this.blob(blob.etag), tmp);
        else await Deno.copyFile(this.blob(blob.etag), tmp);
      } catch (error) {
        // Another download of the same file (this process's or another's) moved the blob into
        // this very snapshot first: its file is there.
        if (!(error instanceof Deno.errors.NotFound)) throw error;
        const there = await Deno.lstat(pointer).catch(() => undefined);
        if (there?.isFile && there.size === blob.size) return pointer;
        throw error;
      }
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
