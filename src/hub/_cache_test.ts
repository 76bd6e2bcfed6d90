import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultCacheDir, RepoCache } from "./_cache.ts";

Deno.test("defaultCacheDir() follows HF_HUB_CACHE, then HF_HOME, then XDG_CACHE_HOME and HOME", () => {
  const from = (vars: Record<string, string>) => defaultCacheDir((n) => vars[n]);
  assert.equal(from({ HF_HUB_CACHE: "/a", HF_HOME: "/b", HOME: "/h" }), "/a");
  assert.equal(from({ HF_HOME: "/b", HOME: "/h" }), join("/b", "hub"));
  assert.equal(from({ XDG_CACHE_HOME: "/x", HOME: "/h" }), join("/x", "huggingface", "hub"));
  assert.equal(from({ HOME: "/h" }), join("/h", ".cache", "huggingface", "hub"));
});

Deno.test("RepoCache names folders like huggingface_hub and links snapshots relatively", async () => {
  const root = await Deno.makeTempDir();
  try {
    const cache = new RepoCache(root, "Qwen/QVQ-72B-Preview");
    assert.equal(cache.dir, join(root, "models--Qwen--QVQ-72B-Preview"));
    const commit = "a".repeat(40);
    await Deno.mkdir(join(cache.dir, "blobs"), { recursive: true });
    await Deno.writeTextFile(cache.blob("e1"), "{}");
    const pointer = await cache.link(commit, "sub/config.json", "e1");
    assert.equal(await Deno.readLink(pointer), "../../../blobs/e1");
    assert.equal(await Deno.readTextFile(pointer), "{}");
    // Relinking to the same blob leaves the link alone (the same inode); to another replaces it.
    const before = (await Deno.lstat(pointer)).ino;
    await cache.link(commit, "sub/config.json", "e1");
    assert.equal((await Deno.lstat(pointer)).ino, before);
    await Deno.writeTextFile(cache.blob("e2"), "[]");
    await cache.link(commit, "sub/config.json", "e2");
    assert.equal(await Deno.readLink(pointer), "../../../blobs/e2");
    // Two processes linking the same files at once (they used to race remove / symlink into
    // AlreadyExists): every link lands, nothing is left behind.
    await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) => cache.link(commit, `f${i % 2}.json`, i < 4 ? "e1" : "e2"),
      ),
    );
    const names = [...Deno.readDirSync(cache.snapshot(commit))].map((e) => e.name).sort();
    assert.deepEqual(names, ["f0.json", "f1.json", "sub"]);
    assert.equal(await cache.readRef("main"), undefined);
    await cache.writeRef("main", commit);
    assert.equal(await cache.readRef("main"), commit);
    assert.equal(await cache.readRef(commit), commit); // a commit is its own ref
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
