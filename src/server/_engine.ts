/**
 * Loads the real engine for a model directory or hub id: the one place the server and the CLI
 * chat turn a `--model` / `QVQ_MODEL` value into a ChatEngine.
 * @module
 */
import type { ChatEngine } from "../generate/types.ts";
import { resolveModel } from "../hub/download.ts";
import { QvqError } from "../errors.ts";

/** A ChatEngine for `model` (a directory, or a hub id such as "Qwen/QVQ-72B-Preview", downloaded if needed). */
export async function loadEngine(model: string): Promise<ChatEngine> {
  const dir = await resolveModel(model);
  throw new QvqError(`no pipeline yet to load ${dir}`);
}
