#!/usr/bin/env python3
"""Builds the Hugging Face parity fixture for the Qwen2 decoder.

Run by developers only (never in CI), with PyPI's torch + transformers +
safetensors, e.g.:

    python3 -m venv /tmp/hfvenv
    /tmp/hfvenv/bin/pip install torch transformers safetensors
    /tmp/hfvenv/bin/python tools/gen_hf_fixture.py

It makes a tiny random Qwen2ForCausalLM (vocab 256, hidden 64, 2 layers,
4 heads, 2 KV heads, intermediate 128, untied head), re-draws every weight
with a larger spread than the default init so the logits are far from
uniform (a bug then shows), saves it with save_pretrained into
tests/model/fixtures/qwen2_tiny/, and writes prompts + reference logits to
tests/model/fixtures/qwen2_tiny_expected.safetensors:

  input_ids       I64 [B, S]  a left-padded batch (pads = 0)
  attention_mask  I64 [B, S]  1 = real token
  position_ids    I64 [B, S]  index among real tokens (0 on pads)
  logits          F64 [B, S, V]  from the same weights run in float64,
                                 each sequence alone (zeros on pads)

The C++ test (tests/model/hf_parity_test.cpp) loads the folder with our
loader and compares its f32 logits on the real tokens.
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "model", "fixtures")


def main():
    torch.manual_seed(1234)
    config = Qwen2Config(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-6,
        rope_theta=100000.0,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))

    model_dir = os.path.join(OUT, "qwen2_tiny")
    if os.path.isdir(model_dir):
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir, safe_serialization=True)
    # Keep only what the loader needs.
    for f in os.listdir(model_dir):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(model_dir, f))

    lengths = [9, 14, 5]
    S = max(lengths)
    g = torch.Generator().manual_seed(99)
    ids = torch.zeros(len(lengths), S, dtype=torch.long)
    mask = torch.zeros(len(lengths), S, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, S - n:] = torch.randint(1, 256, (n,), generator=g)
        mask[b, S - n:] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0) * mask

    ref = Qwen2ForCausalLM(config).eval()
    ref.load_state_dict(model.state_dict())
    ref = ref.double()
    # Each sequence runs alone, unpadded (eager attention turns fully masked
    # pad rows into NaN that leaks through 0 * NaN); real-token logits do not
    # depend on padding, so they are placed into the padded layout.
    logits = torch.zeros(len(lengths), S, 256, dtype=torch.float64)
    logits32 = torch.zeros(len(lengths), S, 256, dtype=torch.float64)
    with torch.no_grad():
        for b, n in enumerate(lengths):
            seq = ids[b:b + 1, S - n:]
            logits[b, S - n:] = ref(input_ids=seq).logits[0]
            logits32[b, S - n:] = model(input_ids=seq).logits[0].double()
    real = mask.bool()
    diff = ((logits32 - logits).abs()[real]).max().item()
    print("torch f32 vs f64 max abs diff on real tokens:", diff)
    print("logit range:", logits[real].abs().max().item())

    save_file(
        {
            "input_ids": ids.contiguous(),
            "attention_mask": mask.contiguous(),
            "position_ids": positions.contiguous(),
            "logits": logits.contiguous(),
        },
        os.path.join(OUT, "qwen2_tiny_expected.safetensors"),
        metadata={"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    )
    with open(os.path.join(model_dir, "config.json")) as f:
        print(json.dumps(json.load(f), indent=1))


if __name__ == "__main__":
    main()
