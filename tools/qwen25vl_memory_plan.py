#!/usr/bin/env python3
"""Memory budget of a VisPlay GRPO run on one GPU for a Qwen2.5-VL model.

    python3 tools/qwen25vl_memory_plan.py                 # the released 3B config
    python3 tools/qwen25vl_memory_plan.py --preset 7b
    python3 tools/qwen25vl_memory_plan.py --config DIR/config.json

Parameters are counted from the config by formula; with transformers
installed, the count is cross-checked by building the model on the meta
device (no memory, no weights). Prints the markdown tables used in
docs/qwen25vl.md. Units: GB = 1e9 bytes (an H200 has 141 GB).
"""
import argparse
import json

# The released Qwen/Qwen2.5-VL-{3B,7B}-Instruct config.json values that set sizes.
PRESETS = {
    "3b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
               num_attention_heads=16, num_key_value_heads=2, tie_word_embeddings=True,
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                           patch_size=14, temporal_patch_size=2, spatial_merge_size=2,
                           out_hidden_size=2048, in_chans=3)),
    "7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False,
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                           patch_size=14, temporal_patch_size=2, spatial_merge_size=2,
                           out_hidden_size=3584, in_chans=3)),
}


def from_config_json(path):
    j = json.load(open(path))
    t = j.get("text_config", j)
    v = j["vision_config"]
    get = lambda k: t.get(k, j.get(k))
    return dict(vocab_size=get("vocab_size"), hidden_size=get("hidden_size"),
                intermediate_size=get("intermediate_size"), num_hidden_layers=get("num_hidden_layers"),
                num_attention_heads=get("num_attention_heads"),
                num_key_value_heads=get("num_key_value_heads"),
                tie_word_embeddings=j.get("tie_word_embeddings", t.get("tie_word_embeddings", False)),
                vision=dict(depth=v["depth"], hidden_size=v["hidden_size"],
                            intermediate_size=v["intermediate_size"], num_heads=v["num_heads"],
                            patch_size=v.get("patch_size", 14),
                            temporal_patch_size=v.get("temporal_patch_size", 2),
                            spatial_merge_size=v.get("spatial_merge_size", 2),
                            out_hidden_size=v.get("out_hidden_size", get("hidden_size")),
                            in_chans=v.get("in_chans", v.get("in_channels", 3))))


def count_params(c):
    """(decoder, embedding + head, vision) parameter counts, as model/qwen25vl.cpp registers them."""
    D, I, L, H, Hkv = (c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
                       c["num_attention_heads"], c["num_key_value_heads"])
    hd = D // H
    layer = (D  # input_layernorm
             + D * H * hd + H * hd  # q
             + 2 * (D * Hkv * hd + Hkv * hd)  # k, v
             + H * hd * D  # o
             + D  # post_attention_layernorm
             + 3 * D * I)  # gate, up, down
    decoder = L * layer + D  # + final norm
    embed = c["vocab_size"] * D * (1 if c["tie_word_embeddings"] else 2)
    v = c["vision"]
    E, VI, M = v["hidden_size"], v["intermediate_size"], v["hidden_size"] * v["spatial_merge_size"] ** 2
    block = 2 * E + 3 * E * E + 3 * E + E * E + E + 2 * (E * VI + VI) + VI * E + E
    vision = (E * v["in_chans"] * v["temporal_patch_size"] * v["patch_size"] ** 2 + v["depth"] * block
              + E + M * M + M + v["out_hidden_size"] * M + v["out_hidden_size"])
    return decoder, embed, vision


def meta_count(c):
    try:
        import torch
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    except ImportError:
        return None
    v = dict(c["vision"])
    v["in_channels"] = v.pop("in_chans")
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
                         intermediate_size=c["intermediate_size"],
                         num_hidden_layers=c["num_hidden_layers"],
                         num_attention_heads=c["num_attention_heads"],
                         num_key_value_heads=c["num_key_value_heads"],
                         tie_word_embeddings=c["tie_word_embeddings"]),
        vision_config=v, tie_word_embeddings=c["tie_word_embeddings"])
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="3b", choices=sorted(PRESETS))
    ap.add_argument("--config")
    ap.add_argument("--image-tokens", type=int, default=256,
                    help="visual tokens per image (448x448 -> 32x32 patches -> 256)")
    ap.add_argument("--prompt-text", type=int, default=200, help="text tokens of the prompt")
    ap.add_argument("--questioner-new", type=int, default=2048)
    ap.add_argument("--reasoner-new", type=int, default=4096)
    ap.add_argument("--group", type=int, default=8, help="G rollouts per prompt")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per rollout batch")
    ap.add_argument("--micro-batch", type=int, default=2, help="sequences per training micro-batch")
    args = ap.parse_args()
    c = from_config_json(args.config) if args.config else PRESETS[args.preset]
    decoder, embed, vision = count_params(c)
    N = decoder + embed + vision
    meta = meta_count(c)
    GB = 1e9
    D, L, Hkv, H = c["hidden_size"], c["num_hidden_layers"], c["num_key_value_heads"], c["num_attention_heads"]
    hd = D // H
    I = c["intermediate_size"]

    print(f"parameters: decoder {decoder / 1e9:.3f} B, embedding/head {embed / 1e9:.3f} B, "
          f"vision {vision / 1e9:.3f} B, total {N / 1e9:.3f} B"
          + (f" (transformers on meta device: {meta / 1e9:.3f} B)" if meta is not None else ""))
    if meta is not None:
        assert meta == N, (meta, N)

    kv_per_token = 2 * L * Hkv * hd * 2  # k and v, bf16
    seq_r = args.image_tokens + args.prompt_text + args.reasoner_new
    seq_q = args.image_tokens + args.prompt_text + args.questioner_new
    rollouts = args.prompts * args.group
    kv_r = rollouts * seq_r * kv_per_token
    # Recomputation per decoder layer: keep each layer's input (bf16) for the
    # whole micro-batch; recompute one layer at a time in the backward.
    tokens_mb = args.micro_batch * seq_r
    checkpoints = tokens_mb * L * D * 2
    # One layer's live activations during its recomputed forward+backward
    # (bf16): normed input, q/k/v, attention out, o_proj out, the MLP's gate, up,
    # silu(gate)*up and their gradients ~2x; attention never materialises S x S.
    per_layer = tokens_mb * (4 * D + (H + 2 * Hkv) * hd + 3 * I) * 2 * 2
    # Log-probs through the fused LM-head op: one vocabulary chunk of 4096 at a time (f32).
    logits_chunk = tokens_mb * 4096 * 4 * 2
    logits_full = tokens_mb * c["vocab_size"] * 4

    rows = [
        ("policy weights, bf16", 2 * N),
        ("fp32 master weights", 4 * N),
        ("AdamW moments m, v (fp32)", 8 * N),
        ("gradients (fp32, accumulated over micro-batches)", 4 * N),
        ("reference policy for the KL term (bf16, frozen)", 2 * N),
        ("the other role, frozen (bf16): Reasoner answers for the Questioner reward", 2 * N),
        (f"rollout KV cache: {rollouts} sequences x {seq_r} tokens x {kv_per_token // 1024} KiB", kv_r),
        (f"activation checkpoints: {tokens_mb} tokens x {L} layers x {D} x bf16", checkpoints),
        ("one layer recomputed (activations + their gradients)", per_layer),
        ("LM-head chunk (fused log-prob op, 4096 columns)", logits_chunk),
    ]
    print()
    print("| item | GB |")
    print("|---|---:|")
    for name, b in rows:
        print(f"| {name} | {b / GB:.1f} |")
    peak_train = sum(b for n, b in rows if not n.startswith("rollout"))
    peak_rollout = 2 * N + 2 * N + 2 * N + kv_r + 4 * N + 8 * N + 4 * N  # KV cache lives while states stay
    print(f"| **peak, training phase** (everything but the KV cache) | **{peak_train / GB:.1f}** |")
    print(f"| **peak, rollout phase** (weights + optimizer state + KV cache) | **{peak_rollout / GB:.1f}** |")
    print()
    print(f"KV cache per token: {kv_per_token} bytes; Questioner rollouts ({seq_q} tokens each): "
          f"{rollouts * seq_q * kv_per_token / GB:.1f} GB")
    print(f"Without the fused LM-head op the logits of one micro-batch alone would take "
          f"{logits_full / GB:.1f} GB (f32); without recomputation the stored activations "
          f"of all {L} layers would take {per_layer / 2 * L / GB:.1f} GB.")


if __name__ == "__main__":
    main()
