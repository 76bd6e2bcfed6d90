import { decodeImage } from "./src/image.ts";
const path = Deno.args[0];
const bytes = await Deno.readFile(path);
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  const d = await decodeImage(bytes);
  console.log(d.width, d.height, (performance.now() - t).toFixed(1), "ms");
}
