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
import { ModelFileError } from "../errors.ts";

/** A commit hash as the hub names it (`X-Repo-Commit`, `refs/<revision>`): a git sha1. */
export const COMMIT_HASH: RegExp = /^[0-9a-f]{40}$/;

/** Whether `name` is one plain path segment: not empty, not `.` or `..`, no separator or NUL. */
function isPlainSegment(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !/[\\/\0]/.test(name);
}

/**
 * `name` if it is one plain path segment ({@link isPlainSegment}), which stays inside the folder it
 * is joined to; else throws. Names that come from the hub's headers
 * become file names in the cache: one that climbed out would write elsewhere.
 */
export function pathSegment(name: string, what: string): string {
  if (!isPlainSegment(name)) {
    throw new ModelFileError(
      `${what} ${JSON.stringify(name)} cannot name a file in the hub cache (it must be one plain ` +
        `path segment).`,
    );
  }
  return name;
}

/**
 * `revision` if its `/`-separated segments are plain path segments (a branch, tag, commit or
 * `refs/pr/3`), else throws: it names `refs/<revision>` in the cache.
 */
export function checkRevision(revision: string): string {
  if (!revision.split("/").every(isPlainSegment)) {
    const quoted = JSON.stringify(revision);
    throw new ModelFileError(
      `Bad revision ${quoted}: use a branch, tag or commit hash (or "refs/pr/N"), without empty, ` +
        `"." or ".." segments.`,
    );
  }
  return revision;
}

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

  /** `blobs/<etag>`; throws where `etag` would lead out of `blobs/`. */
  blob(etag: string): string {
    return join(this.dir, "blobs", pathSegment(etag, "The blob name (ETag)"));
  }

  /** `snapshots/<commit>`; throws unless `commit` is a commit hash. */
  snapshot(commit: string): string {
    if (!COMMIT_HASH.test(commit)) {
      throw new ModelFileError(
        `${JSON.stringify(commit)} is not a commit hash (40 hex digits): no snapshot is named so.`,
      );
    }
    return join(this.dir, "snapshots", commit);
  }

  /**
   * The commit `revision` pointed to when last resolved, if recorded.
   * @throws ModelFileError where the ref holds something else than a commit hash
   */
  async readRef(revision: string): Promise<string | undefined> {
    if (COMMIT_HASH.test(revision)) return revision;
    const path = join(this.dir, "refs", checkRevision(revision));
    let commit: string;
    try {
      commit = (await Deno.readTextFile(path)).trim();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
    if (!COMMIT_HASH.test(commit)) {
      throw new ModelFileError(
        `${path} holds ${JSON.stringify(commit.slice(0, 100))}, not a commit hash (40 hex ` +
          `digits): delete it (the next download online writes it again).`,
      );
    }
    return commit;
  }

  /**
   * Records that `revision` (a branch or tag; commit hashes need no ref) is at `commit` — only
   * where it changed (a read-only cache that already says so is fine, as in huggingface_hub), and
   * by a rename, so a reader never sees it half written.
   */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    // A ref that holds no commit hash is replaced, not an error here.
    if (await this.readRef(revision).catch(() => undefined) === commit) return;
    const path = join(this.dir, "refs", checkRevision(revision));
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
    return await Deno.readLink(pointer).catch(() => undefined) === linkTarget(file, blob.etag);
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
    const target = linkTarget(file, blob.etag);
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

/** The relative symlink from `snapshots/<commit>/<file>` to `blobs/<etag>`. */
function linkTarget(file: string, etag: string): string {
  const depth = file.split("/").length + 1; // up from snapshots/<commit>/<dirs...>
  return [...Array(depth).fill(".."), "blobs", pathSegment(etag, "The blob name (ETag)")].join("/");
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
