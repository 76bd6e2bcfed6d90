/**
 * Headless Chromium for the tests that run qvq in a browser (the bundle, the chat page): Debian's
 * `chromium` (or CHROMIUM_PATH) driven by playwright-core, offline and with a fresh profile.
 * @module
 */
import { type Browser, chromium } from "playwright-core";

/** Launches Chromium; fails with what to install when it is missing. */
export async function launchChromium(): Promise<Browser> {
  const path = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
  try {
    await Deno.stat(path);
  } catch {
    throw new Error(`No Chromium at ${path}: apt-get install -y chromium, or set CHROMIUM_PATH.`);
  }
  return await chromium.launch({
    executablePath: path,
    // Playwright adds --headless and a fresh temporary --user-data-dir itself.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
