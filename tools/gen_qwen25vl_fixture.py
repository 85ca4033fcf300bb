#!/usr/bin/env python3
"""Builds the Qwen2.5-VL parity fixture (tiny, random weights; nothing downloaded).

Run by developers only (never in CI), with PyPI's torch + transformers +
safetensors + pillow, e.g.:

    /tmp/hfvenv/bin/python tools/gen_qwen25vl_fixture.py
    /tmp/hfvenv/bin/python tools/gen_qwen25vl_fixture.py --check DIR   # see check()

What it makes, under tests/model/fixtures/:

  qwen25vl_tiny/          a Hugging Face directory written by save_pretrained:
                          config.json, model-0000N-of-0000M.safetensors (bf16,
                          forced into several shards) + model.safetensors.index.json,
                          tokenizer.json, tokenizer_config.json,
                          preprocessor_config.json, chat_template.json
  qwen25vl_image.png      the test image (168 x 140: already a multiple of 28,
                          so the processor does not resample it)
  qwen25vl_small.png      a 61 x 50 image the processor must resize (to 56 x 56)
  qwen25vl_tiny_expected.safetensors:
      pixel_values        F32 [120, 1176]  processor output for qwen25vl_image.png
      image_grid_thw      I64 [1, 3]
      small_pixel_values  F32 [16, 1176]   processor output for qwen25vl_small.png
      small_grid_thw      I64 [1, 3]
      vision_output       F64 [30, 64]     the vision tower (merger output)
      input_ids           I64 [1, S]       the processor's chat prompt with the image
      position_ids        I64 [3, 1, S]    get_rope_index (M-RoPE t/h/w)
      logits              F32 [1, S, V]    the whole model (run in float64)
      two_input_ids       I64 [1, S2]      a prompt with two images (small, then the test image)
      two_grid_thw        I64 [2, 3]       (its pixel values are small_pixel_values ++ pixel_values)
      two_vision_output   F32 [34, 64]     the vision tower on both images at once
      two_logits_tail     F32 [1, 24, V]   the logits of its last 24 positions
      greedy_tokens       I64 [1, n]       model.generate(do_sample=False), n <= 10 (KV cache,
                                           M-RoPE positions continuing after the image)

The model: vision depth 2 (layer 0 window attention, layer 1 full attention:
fullatt_block_indexes = [1]), width 32, 2 heads, SwiGLU 48, window 112 pixels;
decoder 2 layers, hidden 64, 4 heads, 2 KV heads (head_dim 16, mrope_section
[2, 3, 3]), tied embeddings as in the 3B model. The image gives a 12 x 10
patch grid = 6 x 5 merged tokens, so the 4 x 4 merged-token windows are
padded on both sides (4 windows of 16, 4, 8 and 2 merged tokens).

The vocabulary is tiny: the first 256 byte-level tokens of the real Qwen2
tokenizer plus its first 200 merges, then the Qwen2 special tokens
(<|endoftext|>, <|im_start|>, <|im_end|>, <|vision_start|>, ...) renumbered
right after; the pre-tokenizer, normaliser and decoder are the real ones.

Every weight is rounded to bf16 first, so the bf16 files hold exactly the
weights the float64 reference ran with.
"""
import copy
import json
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2TokenizerFast,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "model", "fixtures")
MODEL_DIR = os.path.join(OUT, "qwen25vl_tiny")
QWEN2_TOKENIZER = os.environ.get("QWEN2_TOKENIZER", "/work/shared/tokenizers/qwen2/tokenizer.json")

# The Qwen2-VL / Qwen2.5-VL instruct chat template (a default system message,
# one <|vision_start|><|image_pad|><|vision_end|> per image item).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
            "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
            "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
            "<|image_pad|>", "<|video_pad|>"]


def tiny_tokenizer_json(num_merges=200):
    """The real Qwen2 tokenizer.json with the vocabulary cut to bytes + the first merges."""
    full = json.load(open(QWEN2_TOKENIZER, encoding="utf-8"))
    vocab_full = full["model"]["vocab"]
    by_id = sorted(vocab_full.items(), key=lambda kv: kv[1])
    vocab = {tok: i for i, (tok, _) in enumerate(by_id[:256])}
    merges = []
    for pair in full["model"]["merges"]:
        a, b = pair if isinstance(pair, list) else pair.split(" ")
        if a in vocab and b in vocab and a + b not in vocab:
            merges.append([a, b])
            vocab[a + b] = len(vocab)
            if len(merges) == num_merges:
                break
    added = []
    for content in SPECIALS:
        added.append({"id": len(vocab) + len(added), "content": content, "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    full["model"]["vocab"] = vocab
    full["model"]["merges"] = merges
    full["added_tokens"] = added
    return full, len(vocab) + len(added)


def make_image(h, w, seed):
    """A smooth random colour field with a few rectangles (so PNG stays small)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        a, b, p = rng.uniform(0.02, 0.1, 3)
        img[..., c] = 127 + 100 * np.sin(a * x + b * y + p * 6)
    for _ in range(4):
        y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
        img[y0:y0 + rng.integers(5, 40), x0:x0 + rng.integers(5, 40)] = rng.integers(0, 256, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def main():
    torch.manual_seed(2025)
    os.makedirs(MODEL_DIR, exist_ok=True)

    tok_json, vocab_size = tiny_tokenizer_json()
    tok_path = os.path.join(MODEL_DIR, "tokenizer.json")
    with open(tok_path, "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=Tokenizer.from_file(tok_path),
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None)
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}

    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
            max_position_embeddings=1024, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 100000.0,
                             "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=48, num_heads=2, in_channels=3,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
            out_hidden_size=64, fullatt_block_indexes=[1], tokens_per_second=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    # Larger spread than the default init so the logits are far from uniform;
    # then round to bf16 so the saved bf16 weights are exactly these.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_q" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) * (1.5 / fan_in ** 0.5))
            p.copy_(p.to(torch.bfloat16).to(torch.float32))

    # Save a bf16 copy: converting the model itself would also round its rotary
    # inv_freq buffers to bf16 and spoil the float64 reference.
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(MODEL_DIR, max_shard_size="150KB")
    model.to(torch.float64)

    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 40)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(MODEL_DIR)
    # The released checkpoints carry preprocessor_config.json in this older
    # form (min_pixels / max_pixels at the top level): write one like it.
    with open(os.path.join(MODEL_DIR, "preprocessor_config.json"), "w") as f:
        json.dump({"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 40, "patch_size": 14,
                   "temporal_patch_size": 2, "merge_size": 2,
                   "image_mean": list(image_processor.image_mean),
                   "image_std": list(image_processor.image_std),
                   "image_processor_type": "Qwen2VLImageProcessor",
                   "processor_class": "Qwen2_5_VLProcessor"}, f, indent=2)
    # save_pretrained rewrote tokenizer.json through the tokenizers library: keep ours.
    with open(tok_path, "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False)

    image = make_image(168, 140, 1)
    image.save(os.path.join(OUT, "qwen25vl_image.png"))
    small = make_image(61, 50, 2)
    small.save(os.path.join(OUT, "qwen25vl_small.png"))

    messages = [{"role": "user", "content": [
        {"type": "image"},
        {"type": "text", "text": "What is in the picture? Answer in one word, then\n\\boxed{x}."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    small_inputs = image_processor(images=[small], return_tensors="pt")
    # The 168 x 140 image is not resampled: its pixel values are the plain
    # normalisation of the PNG (checked here so the fixture says what it claims).
    arr = torch.tensor(np.asarray(image), dtype=torch.float64).permute(2, 0, 1) / 255.0
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float64)[:, None, None]
    std = torch.tensor(image_processor.image_std, dtype=torch.float64)[:, None, None]
    direct = ((arr - mean) / std).reshape(3, 6, 2, 14, 5, 2, 14).permute(1, 4, 2, 5, 0, 3, 6)
    direct = direct.unsqueeze(5).expand(-1, -1, -1, -1, -1, 2, -1, -1).reshape(120, 1176)
    err = (direct - inputs["pixel_values"].to(torch.float64)).abs().max().item()
    assert err < 1e-5, err

    with torch.no_grad():
        pixel_values = inputs["pixel_values"].to(torch.float64)
        grid = inputs["image_grid_thw"]
        vision = model.model.visual(pixel_values, grid_thw=grid).pooler_output
        position_ids, _ = model.model.get_rope_index(
            inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], image_grid_thw=grid)
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    pixel_values=pixel_values, image_grid_thw=grid,
                    mm_token_type_ids=inputs["mm_token_type_ids"])
        generated = model.generate(**{**inputs, "pixel_values": pixel_values}, max_new_tokens=10,
                                   do_sample=False)
        greedy = generated[:, inputs["input_ids"].shape[1]:]

    # Two images in one prompt (the small one first): the window index and the
    # full-attention spans per image, and M-RoPE restarting after each image.
    messages2 = [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"},
        {"type": "text", "text": "Which one has more red?"}]}]
    prompt2 = processor.apply_chat_template(messages2, add_generation_prompt=True, tokenize=False)
    inputs2 = processor(text=[prompt2], images=[small, image], return_tensors="pt")
    with torch.no_grad():
        pv2 = inputs2["pixel_values"].to(torch.float64)
        vision2 = model.model.visual(pv2, grid_thw=inputs2["image_grid_thw"]).pooler_output
        out2 = model(input_ids=inputs2["input_ids"], attention_mask=inputs2["attention_mask"],
                     pixel_values=pv2, image_grid_thw=inputs2["image_grid_thw"],
                     mm_token_type_ids=inputs2["mm_token_type_ids"])

    tensors = {
        "pixel_values": inputs["pixel_values"].to(torch.float32).contiguous(),
        "image_grid_thw": grid.to(torch.int64).contiguous(),
        "small_pixel_values": small_inputs["pixel_values"].to(torch.float32).contiguous(),
        "small_grid_thw": small_inputs["image_grid_thw"].to(torch.int64).contiguous(),
        "vision_output": vision.to(torch.float64).contiguous(),
        "input_ids": inputs["input_ids"].to(torch.int64).contiguous(),
        "position_ids": position_ids.to(torch.int64).contiguous(),
        "logits": out.logits.to(torch.float32).contiguous(),
        "greedy_tokens": greedy.to(torch.int64).contiguous(),
        "two_input_ids": inputs2["input_ids"].to(torch.int64).contiguous(),
        "two_grid_thw": inputs2["image_grid_thw"].to(torch.int64).contiguous(),
        "two_vision_output": vision2.to(torch.float32).contiguous(),
        "two_logits_tail": out2.logits[:, -24:].to(torch.float32).contiguous(),
    }
    save_file(tensors, os.path.join(OUT, "qwen25vl_tiny_expected.safetensors"),
              metadata={"prompt": prompt})
    for k, v in tensors.items():
        print(k, tuple(v.shape), v.dtype)
    print("prompt:", repr(prompt))
    print("logits std", out.logits.std().item())


def check(saved_dir):
    """Loads a directory written by `visplay qwen25vl convert` with transformers
    (model and processor) and compares its logits with the fixture's."""
    from safetensors.torch import load_file
    from transformers import AutoProcessor
    expected = load_file(os.path.join(OUT, "qwen25vl_tiny_expected.safetensors"))
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        saved_dir, dtype=torch.float64, attn_implementation="eager").eval()
    processor = AutoProcessor.from_pretrained(saved_dir)
    image = Image.open(os.path.join(OUT, "qwen25vl_image.png"))
    messages = [{"role": "user", "content": [
        {"type": "image"},
        {"type": "text", "text": "What is in the picture? Answer in one word, then\n\\boxed{x}."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    assert torch.equal(inputs["input_ids"], expected["input_ids"]), "input_ids differ"
    with torch.no_grad():
        out = model(**{**inputs, "pixel_values": inputs["pixel_values"].to(torch.float64)})
    ref = expected["logits"].to(torch.float64)
    rel = ((out.logits - ref).abs().max() / ref.abs().max()).item()
    print(f"{saved_dir}: loads in transformers {__import__('transformers').__version__}; "
          f"logits relative error vs the fixture {rel:.2e}")
    assert rel < 1e-6, rel


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        main()
