// The Qwen2.5-VL vision tower on the sim backend (every op through the CUDA kernel
// sources on the SIMT emulator) against the same tower on cpu. The tiny parity
// fixture's ViT has head dim 16, which the flash kernel does not take, so this test
// widens it to the released models' head dim 80 (2 heads x 80) with random weights:
// layer 0 is window attention (a 64-patch and a 32-patch window: a padded batch),
// layer 1 full attention, then the gelu_erf patch merger.
#include <gtest/gtest.h>

#include <cmath>
#include <utility>

#include "model/qwen25vl.h"
#include "runtime/random.h"
#include "tests/runtime/test_util.h"

namespace visplay {
namespace {

const std::string kConfig =
    std::string(VISPLAY_SOURCE_DIR) + "/tests/model/fixtures/qwen25vl_tiny/config.json";

// max |a - b| / max |b| over the tensor.
double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    err = std::max(err, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return err / scale;
}

TEST(Qwen25VLSim, VisionTowerMatchesCpuAtHeadDim80) {
  Qwen25VLConfig c = load_qwen25vl_config(kConfig);
  c.vision.hidden_size = 160;
  c.vision.num_heads = 2;
  c.vision.intermediate_size = 96;
  ASSERT_EQ(c.vision.head_dim(), 80);
  ASSERT_EQ(c.vision.depth, 2);
  ASSERT_TRUE(c.vision.full_attention(1) && !c.vision.full_attention(0));
  Qwen25VL cpu_model(c), sim_model(c);
  Rng rng(5);
  cpu_model.params().initialize(rng, 0.05);  // wider than 0.02: softmaxes far from flat
  for (const std::string& name : cpu_model.params().names())
    sim_model.params().set(name, cpu_model.params().get(name).detach().to(kSim));
  // One image of 8 x 12 patches: 112-pixel windows are 8 x 8 patches, so 64 + 32 rows.
  std::vector<std::array<int64_t, 3>> grids = {{1, 8, 12}};
  Tensor pixels = test::random_tensor({96, c.vision.patch_dim()}, 6, DType::f32, -2, 2);
  Tensor cpu_out, sim_out;
  {
    NoGradGuard g;
    cpu_out = cpu_model.encode_images(pixels, grids);
    sim_out = sim_model.encode_images(pixels.to(kSim), grids);
  }
  ASSERT_EQ(sim_out.device(), kSim);
  ASSERT_EQ(sim_out.shape(), cpu_out.shape());
  double rel = relative_error(sim_out.to_vector<double>(), cpu_out.to_vector<double>());
  RecordProperty("vision_sim_relative_error", std::to_string(rel));
  std::printf("vision tower sim vs cpu: max relative error %.3g\n", rel);
  // The device attention rounds q, k, v and P to bf16 (tensor cores), so 1e-4 is not
  // guaranteed; the bound leaves 10x margin over the measured error.
  // Measured 9.9e-5; a head-dim-80 bug that drops the last 16 dims of the scores gives
  // 1e-2. (The tanh GELU in the merger gives only 2e-4, within this bound: the kernel
  // test LayersSim.GeluErfForwardBackward catches that one.)
  EXPECT_LT(rel, 1e-3);
}

// The backward of the same tower (the patch merger's gelu_erf and the head-dim-80
// attention backward included): gradients of sum(out * w) for the weights of both
// attention layers, the merger and the patch embedding agree with cpu.
TEST(Qwen25VLSim, VisionTowerGradientsMatchCpuAtHeadDim80) {
  Qwen25VLConfig c = load_qwen25vl_config(kConfig);
  c.vision.hidden_size = 160;
  c.vision.num_heads = 2;
  c.vision.intermediate_size = 96;
  Qwen25VL cpu_model(c), sim_model(c);
  Rng rng(7);
  cpu_model.params().initialize(rng, 0.05);
  for (const std::string& name : cpu_model.params().names())
    sim_model.params().set(name, cpu_model.params().get(name).detach().to(kSim));
  cpu_model.params().set_requires_grad(true);
  sim_model.params().set_requires_grad(true);
  std::vector<std::array<int64_t, 3>> grids = {{1, 8, 12}};
  Tensor pixels = test::random_tensor({96, c.vision.patch_dim()}, 8, DType::f32, -2, 2);
  Tensor cpu_out = cpu_model.encode_images(pixels, grids);
  Tensor sim_out = sim_model.encode_images(pixels.to(kSim), grids);
  Tensor w = test::random_tensor(cpu_out.shape(), 9, DType::f32);
  sum(mul(cpu_out, w)).backward();
  sum(mul(sim_out, w.to(kSim))).backward();
  // Bounds: 10x the measured errors. Weights behind the bf16 attention backward measured
  // <= 2.7e-3; the merger and patch embedding (f32 paths, gelu_erf) <= 1.8e-4. (The
  // tanh GELU derivative in place of gelu_erf's gives only 6e-4 here, hidden by the bf16
  // attention noise; LayersSim.GeluErfForwardBackward catches it.)
  const std::pair<const char*, double> checks[] = {
      {"visual.blocks.0.attn.qkv.weight", 2e-2},  {"visual.blocks.1.attn.qkv.weight", 2e-2},
      {"visual.blocks.0.attn.proj.weight", 2e-2}, {"visual.merger.mlp.0.weight", 2e-3},
      {"visual.merger.mlp.0.bias", 2e-3},         {"visual.patch_embed.proj.weight", 2e-3}};
  for (auto [name, bound] : checks) {
    Tensor gs = sim_model.params().get(name).grad(), gc = cpu_model.params().get(name).grad();
    ASSERT_TRUE(gs.defined() && gc.defined()) << name;
    EXPECT_EQ(gs.device(), kSim) << name;
    double rel = relative_error(gs.to_vector<double>(), gc.to_vector<double>());
    std::printf("%s gradient sim vs cpu: max relative error %.3g\n", name, rel);
    EXPECT_LT(rel, bound) << name;
  }
}

}  // namespace
}  // namespace visplay
