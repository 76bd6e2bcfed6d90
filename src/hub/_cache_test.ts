import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultCacheDir, expandPath, RepoCache } from "./_cache.ts";

Deno.test("defaultCacheDir() follows HF_HUB_CACHE, then HF_HOME, then XDG_CACHE_HOME and HOME", () => {
  const from = (vars: Record<string, string>) => defaultCacheDir((n) => vars[n]);
  assert.equal(from({ HF_HUB_CACHE: "/a", HF_HOME: "/b", HOME: "/h" }), "/a");
  assert.equal(from({ HF_HOME: "/b", HOME: "/h" }), join("/b", "hub"));
  assert.equal(from({ XDG_CACHE_HOME: "/x", HOME: "/h" }), join("/x", "huggingface", "hub"));
  assert.equal(from({ HOME: "/h" }), join("/h", ".cache", "huggingface", "hub"));
});

Deno.test("cache paths expand ~ and $VAR as huggingface_hub's do, and take HUGGINGFACE_HUB_CACHE", () => {
  const from = (vars: Record<string, string>) => defaultCacheDir((n) => vars[n]);
  assert.equal(from({ HF_HOME: "~/hf", HOME: "/h" }), join("/h/hf", "hub"));
  assert.equal(from({ HF_HOME: "$HUNT/hf", HUNT: "/x", HOME: "/h" }), join("/x/hf", "hub"));
  assert.equal(from({ HF_HUB_CACHE: "${HUNT}/c", HUNT: "/x" }), "/x/c");
  assert.equal(from({ HUGGINGFACE_HUB_CACHE: "/old", HF_HOME: "/b" }), "/old");
  assert.equal(from({ HF_HUB_CACHE: "/new", HUGGINGFACE_HUB_CACHE: "/old" }), "/new");
  // An unset variable stays as written (os.path.expandvars); ~user is not ours to expand.
  assert.equal(expandPath("$NOPE/a", () => undefined), "$NOPE/a");
  assert.equal(expandPath("~x/a", (n) => (n === "HOME" ? "/h" : undefined)), "~x/a");
});

Deno.test("RepoCache without symlinks: a fresh blob moves into the snapshot, a shared one is copied, a file there is kept", async () => {
  const root = await Deno.makeTempDir();
  try {
    const cache = new RepoCache(root, "org/name");
    const commit = "c".repeat(40);
    await Deno.mkdir(join(cache.dir, "blobs"), { recursive: true });
    await Deno.writeTextFile(cache.blob("e1"), "{}");
    await Deno.writeTextFile(cache.blob("e2"), "[1]");
    const moved = await cache.link(commit, "a.json", { etag: "e1", size: 2, fresh: true }, false);
    assert.ok((await Deno.lstat(moved)).isFile);
    assert.equal(await Deno.readTextFile(moved), "{}");
    await assert.rejects(Deno.stat(cache.blob("e1")), Deno.errors.NotFound);
    const copied = await cache.link(commit, "b.json", { etag: "e2", size: 3 }, false);
    assert.equal(await Deno.readTextFile(copied), "[1]");
    assert.equal(await Deno.readTextFile(cache.blob("e2")), "[1]");
    // A file of the blob's size is huggingface_hub's copy: left alone (not copied again), even
    // where symlinks could now be made and its blob is gone.
    const inode = (await Deno.lstat(moved)).ino;
    await cache.link(commit, "a.json", { etag: "e1", size: 2 });
    assert.equal((await Deno.lstat(moved)).ino, inode);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("RepoCache names folders like huggingface_hub and links snapshots relatively", async () => {
  const root = await Deno.makeTempDir();
  try {
    const cache = new RepoCache(root, "Qwen/QVQ-72B-Preview");
    assert.equal(cache.dir, join(root, "models--Qwen--QVQ-72B-Preview"));
    const commit = "a".repeat(40);
    await Deno.mkdir(join(cache.dir, "blobs"), { recursive: true });
    await Deno.writeTextFile(cache.blob("e1"), "{}");
    const pointer = await cache.link(commit, "sub/config.json", { etag: "e1", size: 2 });
    assert.equal(await Deno.readLink(pointer), "../../../blobs/e1");
    assert.equal(await Deno.readTextFile(pointer), "{}");
    // Relinking to the same blob leaves the link alone (the same inode); to another replaces it.
    const before = (await Deno.lstat(pointer)).ino;
    await cache.link(commit, "sub/config.json", { etag: "e1", size: 2 });
    assert.equal((await Deno.lstat(pointer)).ino, before);
    await Deno.writeTextFile(cache.blob("e2"), "[]");
    await cache.link(commit, "sub/config.json", { etag: "e2", size: 2 });
    assert.equal(await Deno.readLink(pointer), "../../../blobs/e2");
    // Two processes linking the same files at once (they used to race remove / symlink into
    // AlreadyExists): every link lands, nothing is left behind.
    await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) => cache.link(commit, `f${i % 2}.json`, { etag: i < 4 ? "e1" : "e2", size: 2 }),
      ),
    );
    const names = [...Deno.readDirSync(cache.snapshot(commit))].map((e) => e.name).sort();
    assert.deepEqual(names, ["f0.json", "f1.json", "sub"]);
    assert.equal(await cache.readRef("main"), undefined);
    await cache.writeRef("main", commit);
    assert.equal(await cache.readRef("main"), commit);
    // Unchanged, a ref is not written again (a read-only cache stays usable, as in huggingface_hub).
    const ref = join(cache.dir, "refs", "main");
    const inode = (await Deno.stat(ref)).ino;
    await cache.writeRef("main", commit);
    assert.equal((await Deno.stat(ref)).ino, inode);
    await cache.writeRef("main", "b".repeat(40));
    assert.equal(await cache.readRef("main"), "b".repeat(40));
    assert.equal(await cache.readRef(commit), commit); // a commit is its own ref
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("RepoCache paths stay in the repo's folder: a blob name, commit or revision that would leave it throws", async () => {
  const root = await Deno.makeTempDir();
  try {
    const cache = new RepoCache(root, "org/name");
    for (const etag of ["", ".", "..", "../../../victim.txt", "a/b", "a\\b"]) {
      assert.throws(() => cache.blob(etag), /The blob name \(ETag\) .* cannot name a file/, etag);
      await assert.rejects(
        cache.link("a".repeat(40), "config.json", { etag, size: 2 }),
        /cannot name a file/,
        etag,
      );
    }
    for (const commit of ["", "../../../SNAP", "A".repeat(40), "a".repeat(41)]) {
      assert.throws(() => cache.snapshot(commit), /is not a commit hash/, commit);
    }
    for (const revision of ["", "..", "../x", "a//b", "refs/pr/.."]) {
      await assert.rejects(cache.readRef(revision), /Bad revision/, revision);
      await assert.rejects(cache.writeRef(revision, "a".repeat(40)), /Bad revision/, revision);
    }
    await cache.writeRef("refs/pr/2", "b".repeat(40));
    assert.equal(await cache.readRef("refs/pr/2"), "b".repeat(40));
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["models--org--name"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
