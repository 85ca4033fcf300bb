// Float64 reference implementations of the model, written with plain loops
// over std::vector<double> and no runtime ops, so the tests compare the real
// model against an independent computation. One sequence / one image at a time.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "model/vlm.h"
#include "tests/runtime/test_util.h"

namespace visplay::ref {

using Vec = std::vector<double>;

inline Vec param(const VLM& m, const std::string& name) {
  return m.params().get(name).to_vector<double>();
}

// y[n, out] = x[n, in] W[out, in]^T + b
inline Vec linear(const Vec& x, int64_t n, int64_t in, const Vec& w, int64_t out,
                  const Vec* b = nullptr) {
  Vec y(n * out);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double acc = b ? (*b)[o] : 0.0;
      for (int64_t k = 0; k < in; ++k) acc += x[i * in + k] * w[o * in + k];
      y[i * out + o] = acc;
    }
  return y;
}

inline Vec rmsnorm(const Vec& x, int64_t n, int64_t d, const Vec& w, double eps) {
  Vec y(x.size());
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t k = 0; k < d; ++k) ss += x[i * d + k] * x[i * d + k];
    double r = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t k = 0; k < d; ++k) y[i * d + k] = x[i * d + k] * r * w[k];
  }
  return y;
}

inline Vec layernorm(const Vec& x, int64_t n, int64_t d, const Vec& w, const Vec& b, double eps) {
  Vec y(x.size());
  for (int64_t i = 0; i < n; ++i) {
    double mean = 0, var = 0;
    for (int64_t k = 0; k < d; ++k) mean += x[i * d + k];
    mean /= d;
    for (int64_t k = 0; k < d; ++k) var += (x[i * d + k] - mean) * (x[i * d + k] - mean);
    var /= d;
    double r = 1.0 / std::sqrt(var + eps);
    for (int64_t k = 0; k < d; ++k) y[i * d + k] = (x[i * d + k] - mean) * r * w[k] + b[k];
  }
  return y;
}

inline double gelu_tanh(double x) {
  const double c = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
}
inline double silu(double x) { return x / (1.0 + std::exp(-x)); }

// Rotate-half RoPE on x [S, H, D] with positions pos[S].
inline void rope(Vec& x, int64_t S, int64_t H, int64_t D, const std::vector<int64_t>& pos,
                 double theta) {
  for (int64_t s = 0; s < S; ++s)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < D / 2; ++i) {
        double a = pos[s] * std::pow(theta, -2.0 * i / D);
        double* p = &x[(s * H + h) * D];
        double x1 = p[i], x2 = p[i + D / 2];
        p[i] = x1 * std::cos(a) - x2 * std::sin(a);
        p[i + D / 2] = x2 * std::cos(a) + x1 * std::sin(a);
      }
}

// Softmax attention, q [S, H, D], k/v [S, Hkv, D] -> [S, H * D].
inline Vec attention(const Vec& q, const Vec& k, const Vec& v, int64_t S, int64_t H, int64_t Hkv,
                     int64_t D, bool causal) {
  Vec out(S * H * D, 0.0);
  for (int64_t h = 0; h < H; ++h) {
    int64_t hk = h / (H / Hkv);
    for (int64_t i = 0; i < S; ++i) {
      int64_t end = causal ? i + 1 : S;
      Vec sc(end);
      double mx = -INFINITY;
      for (int64_t j = 0; j < end; ++j) {
        double a = 0;
        for (int64_t d = 0; d < D; ++d) a += q[(i * H + h) * D + d] * k[(j * Hkv + hk) * D + d];
        sc[j] = a / std::sqrt(double(D));
        mx = std::max(mx, sc[j]);
      }
      double z = 0;
      for (int64_t j = 0; j < end; ++j) z += sc[j] = std::exp(sc[j] - mx);
      for (int64_t j = 0; j < end; ++j)
        for (int64_t d = 0; d < D; ++d)
          out[(i * H + h) * D + d] += sc[j] / z * v[(j * Hkv + hk) * D + d];
    }
  }
  return out;
}

// The Qwen2 decoder on one unpadded sequence of input embeddings x [S, D]
// (positions 0..S-1) -> logits [S, V].
inline Vec decoder_logits(const VLM& m, Vec x, int64_t S) {
  const DecoderConfig& c = m.config().decoder;
  int64_t D = c.hidden_size, H = c.num_attention_heads, Hkv = c.num_key_value_heads,
          hd = c.head_dim();
  int64_t I = c.intermediate_size;
  std::vector<int64_t> pos(S);
  for (int64_t s = 0; s < S; ++s) pos[s] = s;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto p = [&](const char* s) { return param(m, decoder_param_name(l, s)); };
    Vec h = rmsnorm(x, S, D, p("input_layernorm.weight"), c.rms_norm_eps);
    Vec bq = p("self_attn.q_proj.bias"), bk = p("self_attn.k_proj.bias"),
        bv = p("self_attn.v_proj.bias");
    Vec q = linear(h, S, D, p("self_attn.q_proj.weight"), H * hd, &bq);
    Vec k = linear(h, S, D, p("self_attn.k_proj.weight"), Hkv * hd, &bk);
    Vec v = linear(h, S, D, p("self_attn.v_proj.weight"), Hkv * hd, &bv);
    rope(q, S, H, hd, pos, c.rope_theta);
    rope(k, S, Hkv, hd, pos, c.rope_theta);
    Vec a = attention(q, k, v, S, H, Hkv, hd, true);
    Vec o = linear(a, S, H * hd, p("self_attn.o_proj.weight"), D);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    h = rmsnorm(x, S, D, p("post_attention_layernorm.weight"), c.rms_norm_eps);
    Vec g = linear(h, S, D, p("mlp.gate_proj.weight"), I);
    Vec u = linear(h, S, D, p("mlp.up_proj.weight"), I);
    for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
    Vec dn = linear(g, S, I, p("mlp.down_proj.weight"), D);
    for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
  }
  x = rmsnorm(x, S, D, param(m, "model.norm.weight"), c.rms_norm_eps);
  Vec head = param(m, c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  return linear(x, S, D, head, c.vocab_size);
}

// ViT + projector on one image [3, H, W] (CHW doubles) -> visual tokens [T, D_lm].
inline Vec vision_tokens(const VLM& m, const Vec& img) {
  const VisionConfig& v = m.config().vision;
  int64_t P = v.patch_size, g = v.grid(), N = v.num_patches(), E = v.hidden_size,
          C = v.num_channels;
  int64_t img_w = v.image_size;
  // Unfold: patch (py, px) row-major, features ordered (c, y, x).
  Vec patches(N * C * P * P);
  for (int64_t py = 0; py < g; ++py)
    for (int64_t px = 0; px < g; ++px)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < P; ++y)
          for (int64_t x = 0; x < P; ++x)
            patches[(py * g + px) * C * P * P + (c * P + y) * P + x] =
                img[(c * img_w + py * P + y) * img_w + px * P + x];
  Vec pb = param(m, "vision.patch_embed.bias");
  Vec x = linear(patches, N, C * P * P, param(m, "vision.patch_embed.weight"), E, &pb);
  Vec pos = param(m, "vision.pos_embed");
  for (size_t i = 0; i < x.size(); ++i) x[i] += pos[i];
  int64_t heads = v.num_heads, hd = E / heads, M = v.mlp_hidden();
  for (int64_t b = 0; b < v.depth; ++b) {
    auto p = [&](const char* s) {
      return param(m, "vision.blocks." + std::to_string(b) + "." + s);
    };
    Vec h = layernorm(x, N, E, p("norm1.weight"), p("norm1.bias"), v.layer_norm_eps);
    Vec bq = p("attn.q_proj.bias"), bk = p("attn.k_proj.bias"), bv = p("attn.v_proj.bias"),
        bo = p("attn.out_proj.bias");
    Vec q = linear(h, N, E, p("attn.q_proj.weight"), E, &bq);
    Vec k = linear(h, N, E, p("attn.k_proj.weight"), E, &bk);
    Vec vv = linear(h, N, E, p("attn.v_proj.weight"), E, &bv);
    Vec a = attention(q, k, vv, N, heads, heads, hd, false);
    Vec o = linear(a, N, E, p("attn.out_proj.weight"), E, &bo);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    h = layernorm(x, N, E, p("norm2.weight"), p("norm2.bias"), v.layer_norm_eps);
    Vec b1 = p("mlp.fc1.bias"), b2 = p("mlp.fc2.bias");
    Vec f = linear(h, N, E, p("mlp.fc1.weight"), M, &b1);
    for (double& t : f) t = gelu_tanh(t);
    Vec f2 = linear(f, N, M, p("mlp.fc2.weight"), E, &b2);
    for (size_t i = 0; i < x.size(); ++i) x[i] += f2[i];
  }
  // Projector: LayerNorm per patch, concat each m x m block (row-major), MLP.
  Vec n = layernorm(x, N, E, param(m, "projector.norm.weight"), param(m, "projector.norm.bias"),
                    v.layer_norm_eps);
  int64_t ms = v.spatial_merge_size, gm = g / ms, T = gm * gm;
  Vec merged(T * v.merged_dim());
  for (int64_t ty = 0; ty < gm; ++ty)
    for (int64_t tx = 0; tx < gm; ++tx)
      for (int64_t dy = 0; dy < ms; ++dy)
        for (int64_t dx = 0; dx < ms; ++dx)
          for (int64_t e = 0; e < E; ++e)
            merged[(ty * gm + tx) * v.merged_dim() + (dy * ms + dx) * E + e] =
                n[((ty * ms + dy) * g + tx * ms + dx) * E + e];
  Vec b1 = param(m, "projector.fc1.bias"), b2 = param(m, "projector.fc2.bias");
  Vec hdn = linear(merged, T, v.merged_dim(), param(m, "projector.fc1.weight"),
                   v.projector_hidden(), &b1);
  for (double& t : hdn) t = gelu_tanh(t);
  return linear(hdn, T, v.projector_hidden(), param(m, "projector.fc2.weight"),
                m.config().decoder.hidden_size, &b2);
}

// Full VLM on one unpadded sequence with its images (each [3, H, W]) -> logits [S, V].
inline Vec vlm_logits(const VLM& m, const std::vector<int64_t>& ids,
                      const std::vector<Vec>& images) {
  int64_t D = m.config().decoder.hidden_size, S = ids.size();
  Vec table = param(m, "model.embed_tokens.weight");
  Vec visual;
  for (const Vec& img : images) {
    Vec t = vision_tokens(m, img);
    visual.insert(visual.end(), t.begin(), t.end());
  }
  // Text rows from the table; the k-th image-pad row takes visual token k.
  Vec x(S * D);
  size_t next = 0;
  for (int64_t s = 0; s < S; ++s) {
    bool pad = ids[s] == m.config().image_pad_token_id;
    for (int64_t d = 0; d < D; ++d)
      x[s * D + d] = pad ? visual[next * D + d] : table[ids[s] * D + d];
    next += pad;
  }
  return decoder_logits(m, x, S);
}

// Overwrites every parameter with values spread wide enough that the logits
// are far from uniform: weights U(-a, a), norm scales 1 + U(-0.3, 0.3), biases U(-0.3, 0.3).
inline void randomize(VLM& m, uint64_t seed, double a = 0.25) {
  Rng rng(seed);
  for (const std::string& name : m.params().names()) {
    Tensor& t = m.params().get(name);
    Init init = m.params().init_of(name);
    double lo = init == Init::normal ? -a : -0.3, hi = init == Init::normal ? a : 0.3;
    Tensor r = rand_uniform(t.shape(), rng, lo, hi, DType::f32);
    if (init == Init::ones) r = add_scalar(r, 1.0);
    t.copy_(r);
  }
}

// A small vision-language config: 16x16 images, 4x4 patches (16 patches ->
// 4 visual tokens), vocabulary of 40 with special tokens at the end.
inline VLMConfig tiny_vlm_config(bool tied = false) {
  VLMConfig c;
  c.decoder.vocab_size = 40;
  c.decoder.hidden_size = 32;
  c.decoder.intermediate_size = 48;
  c.decoder.num_hidden_layers = 2;
  c.decoder.num_attention_heads = 4;
  c.decoder.num_key_value_heads = 2;
  c.decoder.rope_theta = 500.0;
  c.decoder.tie_word_embeddings = tied;
  c.vision.image_size = 16;
  c.vision.patch_size = 4;
  c.vision.hidden_size = 24;
  c.vision.depth = 2;
  c.vision.num_heads = 2;
  c.vision.mlp_ratio = 2.0;
  c.vision.projector_hidden_size = 40;
  c.vision.image_mean = {0.4f, 0.5f, 0.6f};
  c.vision.image_std = {0.2f, 0.25f, 0.3f};
  c.image_pad_token_id = 39;
  c.vision_start_token_id = 37;
  c.vision_end_token_id = 38;
  c.eos_token_id = 36;
  c.pad_token_id = 35;
  return c;
}

}  // namespace visplay::ref
