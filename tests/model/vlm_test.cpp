// The VLM forward against the float64 loop reference (tests/model/reference.h):
// ViT + projector, image-pad replacement, the Qwen2 decoder with left padding,
// the fused log-prob path, gradients, and a short training run.
#include "model/vlm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "runtime/optim.h"
#include "tests/model/reference.h"
#include "tests/runtime/test_util.h"

namespace visplay {
namespace {

using test::all_close;

// Random normalised-looking pixels [N, 3, 16, 16].
Tensor random_pixels(int64_t n, uint64_t seed) {
  return test::random_tensor({n, 3, 16, 16}, seed, DType::f32, -2, 2);
}

std::vector<double> image_of(const Tensor& pixels, int64_t i) {
  return pixels.slice(0, i, i + 1).contiguous().to_vector<double>();
}

// A prompt with one image: text, <vision_start>, T pads, <vision_end>, text.
std::vector<int64_t> image_prompt(const VLMConfig& c, std::vector<int64_t> before,
                                  std::vector<int64_t> after) {
  std::vector<int64_t> ids = before;
  ids.push_back(c.vision_start_token_id);
  for (int64_t t = 0; t < c.vision.num_visual_tokens(); ++t) ids.push_back(c.image_pad_token_id);
  ids.push_back(c.vision_end_token_id);
  ids.insert(ids.end(), after.begin(), after.end());
  return ids;
}

// Left-pads rows into [B, S] ids and mask tensors.
void left_pad(const std::vector<std::vector<int64_t>>& rows, int64_t pad, Tensor* ids,
              Tensor* mask) {
  int64_t B = rows.size(), S = 0;
  for (const auto& r : rows) S = std::max<int64_t>(S, r.size());
  std::vector<int64_t> flat(B * S, pad), m(B * S, 0);
  for (int64_t b = 0; b < B; ++b)
    for (size_t s = 0; s < rows[b].size(); ++s) {
      flat[b * S + S - rows[b].size() + s] = rows[b][s];
      m[b * S + S - rows[b].size() + s] = 1;
    }
  *ids = Tensor::from_vector(flat, {B, S});
  *mask = Tensor::from_vector(m, {B, S}, DType::i32);
}

TEST(VLM, ParameterNamesFollowHuggingFaceForTheDecoder) {
  VLM m(ref::tiny_vlm_config());
  const ParamStore& p = m.params();
  for (const char* name :
       {"model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.bias",
        "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
        "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
        "model.norm.weight", "lm_head.weight", "vision.pos_embed", "projector.fc2.weight"})
    EXPECT_TRUE(p.contains(name)) << name;
  EXPECT_FALSE(p.contains("model.layers.0.self_attn.o_proj.bias"));  // bias on q/k/v only
  EXPECT_EQ(p.get("model.layers.0.self_attn.k_proj.weight").shape(),
            (Shape{16, 32}));  // 2 kv heads x 8
  VLM tied(ref::tiny_vlm_config(true));
  EXPECT_FALSE(tied.params().contains("lm_head.weight"));
}

TEST(VLM, VisionEncoderAndProjectorMatchFloat64Reference) {
  VLM m(ref::tiny_vlm_config());
  ref::randomize(m, 11);
  Tensor pixels = random_pixels(2, 5);
  Tensor out = Tensor::full({1}, NAN);  // poison
  {
    NoGradGuard g;
    out = m.encode_images(pixels);
  }
  ASSERT_EQ(out.shape(), (Shape{2, 4, 32}));
  for (int64_t i = 0; i < 2; ++i) {
    std::vector<double> want = ref::vision_tokens(m, image_of(pixels, i));
    EXPECT_TRUE(all_close(out.slice(0, i, i + 1).contiguous(), want, 1e-4, 1e-5)) << "image " << i;
  }
}

TEST(VLM, PatchEmbedUnfoldsRowMajorPatchesInConvWeightOrder) {
  // A one-hot weight row picks one (c, y, x) pixel of each patch.
  int64_t P = 4, C = 3, E = 2;
  Tensor pixels = test::random_tensor({1, C, 8, 8}, 3, DType::f64);
  std::vector<double> w(E * C * P * P, 0.0);
  w[0 * C * P * P + (2 * P + 1) * P + 3] = 1.0;  // row 0: c=2, y=1, x=3
  w[1 * C * P * P + (1 * P + 0) * P + 2] = 1.0;  // row 1: c=1, y=0, x=2
  Tensor weight = Tensor::from_vector(w, {E, C * P * P}, DType::f64);
  Tensor out = patch_embed(pixels, weight, Tensor(), Tensor(), P);
  ASSERT_EQ(out.shape(), (Shape{1, 4, E}));
  std::vector<double> px = pixels.to_vector<double>(), got = out.to_vector<double>();
  for (int64_t py = 0; py < 2; ++py)
    for (int64_t pxi = 0; pxi < 2; ++pxi) {
      int64_t patch = py * 2 + pxi;
      EXPECT_FLOAT_EQ(got[patch * E + 0], px[(2 * 8 + py * P + 1) * 8 + pxi * P + 3]);  // f32 op
      EXPECT_FLOAT_EQ(got[patch * E + 1], px[(1 * 8 + py * P + 0) * 8 + pxi * P + 2]);
    }
}

TEST(VLM, LeftPaddedBatchWithImagesMatchesFloat64Reference) {
  for (bool tied : {false, true}) {
    VLM m(ref::tiny_vlm_config(tied));
    ref::randomize(m, 21);
    const VLMConfig& c = m.config();
    std::vector<std::vector<int64_t>> rows = {
        image_prompt(c, {1, 2, 3}, {4, 5, 6, 7}),
        {8, 9, 10, 11, 12},
        image_prompt(c, {13}, {14}),
    };
    // The third prompt carries two images.
    std::vector<int64_t> second = image_prompt(c, {}, {15});
    rows[2].insert(rows[2].end(), second.begin(), second.end());
    Tensor pixels = random_pixels(3, 8);
    Tensor ids, mask;
    left_pad(rows, c.pad_token_id, &ids, &mask);
    Tensor logits;
    {
      NoGradGuard g;
      logits = m.logits({ids, mask, pixels});
    }
    int64_t S = ids.size(1), V = c.decoder.vocab_size;
    std::vector<std::vector<std::vector<double>>> images = {
        {image_of(pixels, 0)}, {}, {image_of(pixels, 1), image_of(pixels, 2)}};
    for (size_t b = 0; b < rows.size(); ++b) {
      std::vector<double> want = ref::vlm_logits(m, rows[b], images[b]);
      int64_t n = rows[b].size();
      Tensor got = logits.slice(0, b, b + 1).slice(1, S - n, S).contiguous().reshape({n, V});
      EXPECT_TRUE(all_close(got, want, 1e-4, 1e-5)) << "row " << b << (tied ? " tied" : " untied");
    }
  }
}

TEST(VLM, TokenLogprobsEqualLogSoftmaxOfLogits) {
  VLM m(ref::tiny_vlm_config());
  ref::randomize(m, 31);
  const VLMConfig& c = m.config();
  Tensor ids, mask;
  left_pad({image_prompt(c, {1, 2}, {3, 4, 5}), {6, 7, 8}}, c.pad_token_id, &ids, &mask);
  Tensor pixels = random_pixels(1, 9);
  Tensor targets = Tensor::from_vector(std::vector<int64_t>(ids.numel(), 0), ids.shape());
  Rng rng(4);
  for (int64_t i = 0; i < targets.numel(); ++i) targets.data<int64_t>()[i] = rng.randint(0, 36);
  NoGradGuard g;
  TokenLogprobs lp = m.token_logprobs({ids, mask, pixels}, targets);
  std::vector<double> logits = m.logits({ids, mask, pixels}).to_vector<double>();
  int64_t V = c.decoder.vocab_size;
  std::vector<double> want(targets.numel());
  for (int64_t i = 0; i < targets.numel(); ++i) {
    double mx = -INFINITY, z = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, logits[i * V + v]);
    for (int64_t v = 0; v < V; ++v) z += std::exp(logits[i * V + v] - mx);
    want[i] = logits[i * V + targets.data<int64_t>()[i]] - mx - std::log(z);
  }
  EXPECT_TRUE(all_close(lp.logprobs, want, 1e-5, 1e-5));
}

TEST(VLM, GradientsReachVisionProjectorAndDecoderThroughImagePads) {
  VLM m(ref::tiny_vlm_config());
  ref::randomize(m, 41);
  ParamStore& p = m.params();
  for (const std::string& name : p.names()) p.set(name, p.get(name).to(DType::f64));
  const VLMConfig& c = m.config();
  Tensor ids, mask;
  left_pad({image_prompt(c, {1}, {2, 3}), {4, 5, 6}}, c.pad_token_id, &ids, &mask);
  Tensor pixels = test::random_tensor({1, 3, 16, 16}, 12, DType::f64);
  std::vector<std::string> names = {"vision.pos_embed", "projector.fc2.bias",
                                    "model.layers.1.self_attn.k_proj.bias",
                                    "model.embed_tokens.weight"};
  std::vector<Tensor> inputs;
  for (const auto& n : names) inputs.push_back(p.get(n));
  test::expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        for (size_t i = 0; i < names.size(); ++i) p.set(names[i], in[i]);
        // logits, not token_logprobs: the fused op computes in f32 even for
        // f64 inputs, too coarse for finite differences.
        return m.logits({ids, mask, pixels});
      },
      inputs, 1e-6, 1e-5, 1e-7, 12);
}

TEST(VLM, ImagePadCountMustMatchVisualTokens) {
  VLM m(ref::tiny_vlm_config());
  m.init_weights(1);
  const VLMConfig& c = m.config();
  std::vector<int64_t> row = image_prompt(c, {1}, {2});
  row.pop_back();
  row.pop_back();
  row.pop_back();  // drop "2", vision_end and one pad
  Tensor ids = Tensor::from_vector(row, {1, static_cast<int64_t>(row.size())});
  try {
    NoGradGuard g;
    m.logits({ids, Tensor(), random_pixels(1, 2)});
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("3 image-pad tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("4 visual tokens"), std::string::npos) << e.what();
  }
}

TEST(VLM, PositionsCountRealTokensOnly) {
  Tensor mask = Tensor::from_vector(
      std::vector<int32_t>{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1}, {3, 5});
  EXPECT_EQ(positions_from_mask(mask).to_vector<int64_t>(),
            (std::vector<int64_t>{0, 0, 0, 1, 2, 0, 1, 2, 3, 4, 0, 0, 0, 0, 1}));
}

TEST(VLM, SameSeedSameWeightsAndTrainingLowersTheLoss) {
  VLM a(ref::tiny_vlm_config()), b(ref::tiny_vlm_config());
  a.init_weights(77);
  b.init_weights(77);
  for (const std::string& n : a.params().names())
    ASSERT_EQ(a.params().get(n).to_vector<float>(), b.params().get(n).to_vector<float>()) << n;
  // Memorise one short image+text batch with AdamW: the loss must fall a lot.
  const VLMConfig& c = a.config();
  Tensor ids, mask;
  left_pad({image_prompt(c, {1, 2}, {3, 4, 5, 6}), {7, 8, 9, 10, 11}}, c.pad_token_id, &ids, &mask);
  Tensor pixels = random_pixels(1, 3);
  int64_t B = ids.size(0), S = ids.size(1);
  std::vector<int64_t> id = ids.to_vector<int64_t>(), tgt(B * S, 0);
  std::vector<int32_t> m = mask.to_vector<int32_t>();
  std::vector<double> weight(B * S, 0.0);
  for (int64_t b2 = 0; b2 < B; ++b2)
    for (int64_t s = 0; s + 1 < S; ++s)
      if (m[b2 * S + s] && id[b2 * S + s + 1] != c.image_pad_token_id)
        tgt[b2 * S + s] = id[b2 * S + s + 1], weight[b2 * S + s] = 1.0;
  Tensor targets = Tensor::from_vector(tgt, {B, S}),
         w = Tensor::from_vector(weight, {B, S}, DType::f32);
  a.params().set_requires_grad(true);
  AdamW opt(a.params().tensors(), {.lr = 3e-3, .weight_decay = 0.0});
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    opt.zero_grad();
    Tensor loss = neg(sum(mul(a.token_logprobs({ids, mask, pixels}, targets).logprobs, w)));
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_LT(last, 0.3 * first) << "first " << first << " last " << last;
  // The vision tower trained too, and b (same seed, untouched) did not move.
  EXPECT_TRUE(a.params().get("vision.blocks.0.attn.q_proj.weight").grad().defined());
  EXPECT_NE(a.params().get("vision.pos_embed").to_vector<float>(),
            b.params().get("vision.pos_embed").to_vector<float>());
  // clone() copies the weights: training the original leaves the clone as it was.
  VLM frozen = a.clone();
  std::vector<float> before = frozen.params().get("model.norm.weight").to_vector<float>();
  EXPECT_EQ(before, a.params().get("model.norm.weight").to_vector<float>());
  opt.zero_grad();
  neg(sum(mul(a.token_logprobs({ids, mask, pixels}, targets).logprobs, w))).backward();
  opt.step();
  EXPECT_NE(before, a.params().get("model.norm.weight").to_vector<float>());
  EXPECT_EQ(before, frozen.params().get("model.norm.weight").to_vector<float>());
}

// Recomputed decoder layers (set_recompute_layers): the same loss and bit-identical gradients
// of every parameter over an image batch with left padding, twice in a row (determinism).
TEST(VLM, RecomputedLayersGiveBitIdenticalGradients) {
  VLM m(ref::tiny_vlm_config());
  m.init_weights(5);
  m.params().set_requires_grad(true);
  const VLMConfig& c = m.config();
  Tensor ids, mask;
  left_pad({image_prompt(c, {1, 2}, {3, 4, 5}), {7, 8, 9, 10}}, c.pad_token_id, &ids, &mask);
  Tensor pixels = random_pixels(1, 8);
  Tensor targets =
      test::random_tensor(ids.shape(), 9, DType::f64, 0, c.decoder.vocab_size - 1).to(DType::i64);
  Tensor w = test::random_tensor(ids.shape(), 10, DType::f32);
  std::string grads[3];
  double losses[3];
  for (int run = 0; run < 3; ++run) {
    m.set_recompute_layers(run > 0);
    for (const Tensor& p : m.params().tensors()) p.zero_grad();
    Tensor loss = sum(mul(m.token_logprobs({ids, mask, pixels}, targets).logprobs, w));
    losses[run] = loss.item();
    loss.backward();
    for (const std::string& name : m.params().names()) {
      Tensor g = m.params().get(name).grad();
      ASSERT_TRUE(g.defined()) << name;
      g = g.contiguous();
      grads[run].append(static_cast<const char*>(g.raw_data()), g.numel() * 4);
    }
  }
  EXPECT_EQ(losses[1], losses[0]);
  EXPECT_TRUE(grads[1] == grads[0]);
  EXPECT_TRUE(grads[2] == grads[1]);
}

}  // namespace
}  // namespace visplay
