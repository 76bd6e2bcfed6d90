#!/usr/bin/env python3
"""Regenerates tests/fixtures/video/: video references from transformers' Qwen2-VL on the tiny
fixture model (float32 compute on its bf16 weights, as the image references were made).

CI never runs this; it documents where the committed references came from. Run it from the
project root with the versions the model references were made with:

    python3 -m venv /tmp/pyenv
    /tmp/pyenv/bin/pip install torch torchvision transformers==5.17.0 pillow numpy
    /tmp/pyenv/bin/python tests/tools/make_video_refs.py

Frames are PNGs (lossless, so every decoder sees the same pixels); each video is given to the
processor as its list of frames (`videos=[[frame, ...]]`), which with the video processor's
defaults (`do_sample_frames` off) uses every frame. Outputs (tests/fixtures/video/):
  <case>_f<k>.png / <case>_img.png   the frames and images
  <case>.safetensors   input_ids, position_ids, rope_deltas, pixel_values_videos, video_grid_thw,
                       (pixel_values, image_grid_thw), logits_last_top_values / _ids (the last
                       row's 256 largest), logits_last_absmax, logits_argmax, logits_max (every
                       position), generated_ids
  cases.json           [{name, prompt, frames, image, video_grid_thw, image_grid_thw, seq_len,
                         generated_ids, generated_text}]
"""

import json
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "fixtures" / "tiny-qwen2vl"
OUT = ROOT / "fixtures" / "video"
STEPS = 12


def frame(height: int, width: int, k: int) -> np.ndarray:
    """(height, width, 3) u8: a disc moving right frame by frame over gradients and noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack([255 * x / (width - 1), 255 * y / (height - 1), 128 + 90 * np.sin((x + 3 * k) / 4.0)], -1)
    cx, cy = width * (0.2 + 0.15 * k), height * 0.5
    img[(x - cx) ** 2 + (y - cy) ** 2 < (min(height, width) * 0.25) ** 2] = [240, 20 + 40 * k, 60]
    rng = np.random.default_rng(100 + k)
    img += rng.integers(-12, 13, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


CASES = [
    # Five frames: an odd count, so the last temporal patch repeats frame 4.
    {"name": "video0", "frames": (5, 56, 84), "image": None, "prompt": "What happens in this video?"},
    # An image, then a two-frame video of another size, in one message.
    {"name": "video1", "frames": (2, 70, 40), "image": (50, 66), "prompt": "Is the image a frame of the video?"},
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    processor = AutoProcessor.from_pretrained(MODEL)
    model = Qwen2VLForConditionalGeneration.from_pretrained(MODEL, dtype=torch.bfloat16).float().eval()
    out_cases = []
    for case in CASES:
        name = case["name"]
        n, h, w = case["frames"]
        frame_files, frames = [], []
        for k in range(n):
            f = f"{name}_f{k}.png"
            Image.fromarray(frame(h, w, k)).save(OUT / f)
            frame_files.append(f)
            frames.append(Image.open(OUT / f).convert("RGB"))
        content = []
        images = None
        image_file = None
        if case["image"]:
            ih, iw = case["image"]
            image_file = f"{name}_img.png"
            Image.fromarray(frame(ih, iw, 7)).save(OUT / image_file)
            images = [Image.open(OUT / image_file).convert("RGB")]
            content.append({"type": "image"})
        content += [{"type": "video"}, {"type": "text", "text": case["prompt"]}]
        messages = [{"role": "user", "content": content}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=images, videos=[frames], return_tensors="pt")
        with torch.no_grad():
            position_ids, rope_deltas = model.model.get_rope_index(
                inputs["input_ids"],
                inputs["mm_token_type_ids"],
                inputs.get("image_grid_thw"),
                inputs["video_grid_thw"],
            )
            logits = model(**inputs).logits[0]
            gen = model.generate(**inputs, max_new_tokens=STEPS, do_sample=False)
        generated = gen[0, inputs["input_ids"].shape[1]:]
        tensors = {
            "input_ids": inputs["input_ids"][0].to(torch.int32),
            "position_ids": position_ids[:, 0].to(torch.int32).contiguous(),
            "rope_deltas": rope_deltas.reshape(-1).to(torch.int32),
            "pixel_values_videos": inputs["pixel_values_videos"].float().contiguous(),
            "video_grid_thw": inputs["video_grid_thw"].to(torch.int32),
            # The last row's 256 largest logits and its max |logit| (the whole row is 600 KB:
            # the image references check whole rows, these every position's max and argmax).
            "logits_last_top_values": logits[-1].topk(256).values.contiguous(),
            "logits_last_top_ids": logits[-1].topk(256).indices.to(torch.int32),
            "logits_last_absmax": logits[-1].abs().max().reshape(1),
            "logits_argmax": logits.argmax(-1).to(torch.int32),
            "logits_max": logits.max(-1).values.contiguous(),
            "generated_ids": generated.to(torch.int32),
        }
        if images:
            tensors["pixel_values"] = inputs["pixel_values"].float().contiguous()
            tensors["image_grid_thw"] = inputs["image_grid_thw"].to(torch.int32)
        save_file(tensors, str(OUT / f"{name}.safetensors"))
        out_cases.append({
            "name": name,
            "prompt": case["prompt"],
            "frames": frame_files,
            "image": image_file,
            "video_grid_thw": inputs["video_grid_thw"].tolist(),
            "image_grid_thw": inputs["image_grid_thw"].tolist() if images else [],
            "seq_len": int(inputs["input_ids"].shape[1]),
            "generated_ids": generated.tolist(),
            "generated_text": processor.decode(generated, skip_special_tokens=True),
        })
    meta = {
        "model": "tiny-qwen2vl",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "dtype_reference": "float32 compute on bfloat16-rounded weights",
        "cases": out_cases,
    }
    (OUT / "cases.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
