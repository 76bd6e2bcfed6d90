import assert from "node:assert/strict";
import { PAGE_HTML } from "./_page.ts";

Deno.test("PAGE_HTML is one self-contained document whose script compiles", () => {
  assert.match(PAGE_HTML, /^<!doctype html>/);
  // No external assets: the page must work offline and from any mount point.
  assert.doesNotMatch(PAGE_HTML, /(src|href)="(https?:)?\/\//);
  const scripts = [...PAGE_HTML.matchAll(/<script type="module">([\s\S]*?)<\/script>/g)];
  assert.equal(scripts.length, 1);
  // Compiling (not running) the script catches syntax errors without a browser.
  assert.doesNotThrow(() => new Function(scripts[0][1]));
  // Nor one in an older browser: a regex lookbehind is a syntax error to Safari before 16.4,
  // which then runs none of the script.
  assert.doesNotMatch(scripts[0][1], /\(\?<[=!]/);
  // API paths relative to the page, so the page also works when the app is mounted under a prefix.
  assert.match(scripts[0][1], /fetch\(api\("v1\/chat\/completions"\)/);
  assert.match(scripts[0][1], /fetch\(api\("v1\/models"\)/);
});
