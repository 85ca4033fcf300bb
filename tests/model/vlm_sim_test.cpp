// One training step of a tiny VLM on the sim backend (every op through the
// CUDA kernel sources on the SIMT emulator) against the same step on cpu:
// the losses and every parameter's gradient agree, and AdamW moves the
// weights the same way wherever the gradient is clearly non-zero (Adam's
// first step is lr * sign(g): a gradient within rounding of 0 may flip sign).
// Head dims are 64 because the flash-attention kernel takes 64, 80 or 128.
#include <gtest/gtest.h>

#include "model/vlm.h"
#include "runtime/optim.h"
#include "tests/model/reference.h"
#include "tests/runtime/test_util.h"

namespace visplay {
namespace {

// The tiny test VLM with head dims of 64 (the flash-attention kernel takes 64, 80 or 128).
VLMConfig sim_config() {
  VLMConfig c = ref::tiny_vlm_config();
  c.decoder.hidden_size = 128;
  c.decoder.intermediate_size = 96;
  c.decoder.num_hidden_layers = 1;
  c.decoder.num_attention_heads = 2;
  c.decoder.num_key_value_heads = 1;
  c.vision.hidden_size = 64;
  c.vision.depth = 1;
  c.vision.num_heads = 1;
  c.vision.projector_hidden_size = 48;
  return c;
}

struct StepResult {
  double loss;
  std::vector<std::vector<double>> grads, weights;
};

// Weights after the step agree where |g| is well above the backends' rounding.
::testing::AssertionResult same_update(const std::vector<double>& sim_w, const std::vector<double>& cpu_w,
                                       const std::vector<double>& cpu_g) {
  double gmax = 0;
  for (double g : cpu_g) gmax = std::max(gmax, std::abs(g));
  for (size_t i = 0; i < cpu_w.size(); ++i)
    if (std::abs(cpu_g[i]) > std::max(0.05 * gmax, 1e-6) && std::abs(sim_w[i] - cpu_w[i]) > 1e-4)
      return ::testing::AssertionFailure() << "element " << i << ": " << sim_w[i] << " vs " << cpu_w[i]
                                           << " (gradient " << cpu_g[i] << ")";
  return ::testing::AssertionSuccess();
}

// Masked mean negative log-likelihood of the targets, one backward, one AdamW step.
StepResult train_step(VLM& model, Device device) {
  const VLMConfig& c = model.config();
  int64_t T = c.vision.num_visual_tokens();
  std::vector<int64_t> row0 = {1, 2, c.vision_start_token_id}, row1 = {c.vision_start_token_id};
  for (int64_t t = 0; t < T; ++t) row0.push_back(c.image_pad_token_id), row1.push_back(c.image_pad_token_id);
  for (int64_t x : {c.vision_end_token_id, int64_t{4}, int64_t{5}, int64_t{6}}) row0.push_back(x), row1.push_back(x);
  row1.push_back(7);
  row1.push_back(8);
  int64_t S = std::max(row0.size(), row1.size());
  std::vector<int64_t> ids(2 * S, c.pad_token_id), targets(2 * S, 0);
  std::vector<int32_t> mask(2 * S, 0);
  std::vector<float> weight(2 * S, 0.0f);
  for (int b = 0; b < 2; ++b) {
    const auto& r = b == 0 ? row0 : row1;
    int64_t off = S - r.size();
    for (size_t s = 0; s < r.size(); ++s) {
      ids[b * S + off + s] = r[s];
      mask[b * S + off + s] = 1;
      if (s + 1 < r.size()) {
        targets[b * S + off + s] = r[s + 1];
        weight[b * S + off + s] = 1.0f;
      }
    }
  }
  VLMInput in;
  in.input_ids = Tensor::from_vector(ids, {2, S}, DType::i64, device);
  in.attention_mask = Tensor::from_vector(mask, {2, S}, DType::i32, device);
  in.pixels = test::random_tensor({2, 3, 16, 16}, 9, DType::f32, -2, 2).to(device);
  Tensor tgt = Tensor::from_vector(targets, {2, S}, DType::i64, device);
  Tensor w = Tensor::from_vector(weight, {2, S}, DType::f32, device);

  model.params().set_requires_grad(true);
  std::vector<Tensor> params = model.params().tensors();
  AdamW opt(params, AdamWOptions{1e-2, 0.9, 0.999, 1e-8, 0.01});
  Tensor lp = model.token_logprobs(in, tgt).logprobs;
  Tensor loss = scale(sum(mul(lp, w)), -1.0 / sum(w).item());
  loss.backward();
  StepResult r;
  r.loss = loss.item();
  for (const Tensor& p : params) r.grads.push_back(p.grad().to_vector<double>());
  opt.step();
  for (const Tensor& p : params) r.weights.push_back(p.to_vector<double>());
  return r;
}

TEST(VLMSim, TrainingStepMatchesCpu) {
  VLM cpu_model(sim_config());
  cpu_model.init_weights(3);
  VLM sim_model(sim_config());
  for (const std::string& name : cpu_model.params().names())
    sim_model.params().set(name, cpu_model.params().get(name).detach().to(kSim));
  ASSERT_EQ(sim_model.params().get("model.embed_tokens.weight").device(), kSim);

  StepResult cpu = train_step(cpu_model, kCPU);
  StepResult sim = train_step(sim_model, kSim);
  EXPECT_NEAR(sim.loss, cpu.loss, 1e-2 * std::abs(cpu.loss));
  const auto& names = cpu_model.params().names();
  // Attention runs on bf16 tensor cores on the device: bf16-level tolerances.
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_TRUE(test::all_close(sim.grads[i], cpu.grads[i], 5e-2, 2e-3)) << "gradient of " << names[i];
    EXPECT_TRUE(same_update(sim.weights[i], cpu.weights[i], cpu.grads[i])) << "weights of " << names[i];
  }
}

}  // namespace
}  // namespace visplay
