// The op cases of the test-backend-ops suites: each runs on a device backend
// (sim or cuda) and on cpu with the same random inputs, and the outputs and
// input gradients must agree within the case's tolerance.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "runtime/ops.h"
#include "runtime/ops_gelu_erf.h"
#include "tests/runtime/test_util.h"

namespace visplay::test {
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;



struct OpCase {
  std::string name;
  std::vector<Shape> inputs;
  Fn fn;
  double lo = -1.0, hi = 1.0;  // input range
  double rtol = 1e-5, atol = 1e-6;
};

inline std::vector<Tensor> make_inputs(const OpCase& c, Device device) {
  std::vector<Tensor> in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t = test::random_tensor(c.inputs[i], 1000 + i, DType::f32, c.lo, c.hi);
    in.push_back(t.to(device).detach().set_requires_grad());
  }
  return in;
}

inline void run_case(const OpCase& c, Device device) {
  std::vector<Tensor> cpu_in = make_inputs(c, kCPU), sim_in = make_inputs(c, device);
  Tensor cpu_out = c.fn(cpu_in), sim_out = c.fn(sim_in);
  ASSERT_EQ(sim_out.device(), device) << c.name << " did not run on " << device.str();
  ASSERT_EQ(cpu_out.shape(), sim_out.shape());
  EXPECT_TRUE(test::all_close(sim_out.to_vector<double>(), cpu_out.to_vector<double>(), c.rtol, c.atol))
      << c.name << " forward";
  Tensor w = test::random_tensor(cpu_out.shape(), 77, DType::f32);
  sum(mul(cpu_out, w)).backward();
  sum(mul(sim_out, w.to(device))).backward();
  for (size_t i = 0; i < cpu_in.size(); ++i) {
    ASSERT_TRUE(sim_in[i].grad().defined()) << c.name << " input " << i << " has no device gradient";
    EXPECT_EQ(sim_in[i].grad().device(), device);
    EXPECT_TRUE(test::all_close(sim_in[i].grad().to_vector<double>(), cpu_in[i].grad().to_vector<double>(),
                                c.rtol, c.atol))
        << c.name << " gradient of input " << i;
  }
}

inline std::vector<OpCase> cases() {
  auto one = [](Tensor (*f)(const Tensor&)) { return [f](const std::vector<Tensor>& x) { return f(x[0]); }; };
  return {
      {"add_broadcast", {{3, 5, 7}, {7}}, [](auto& x) { return add(x[0], x[1]); }},
      {"sub_broadcast_mid", {{3, 5, 7}, {5, 1}}, [](auto& x) { return sub(x[0], x[1]); }},
      {"mul_transposed", {{6, 4}, {4, 6}}, [](auto& x) { return mul(x[0], x[1].transpose(0, 1)); }},
      {"scale", {{33}}, [](auto& x) { return scale(x[0], -1.75); }},
      {"add_scalar_neg", {{33}}, [](auto& x) { return neg(add_scalar(x[0], 0.5)); }},
      {"exp", {{17, 3}}, one(exp)},
      {"log", {{17, 3}}, one(log), 0.1, 3.0},
      {"gelu", {{300}}, one(gelu), -4, 4},
      {"silu", {{300}}, one(silu), -4, 4},
      {"gelu_erf", {{7, 45}}, one(gelu_erf), -5, 5},
      {"softmax", {{5, 130}}, one(softmax), -5, 5},
      {"log_softmax", {{5, 130}}, one(log_softmax), -5, 5},
      {"sum_all", {{1000}}, [](auto& x) { return sum(x[0]); }},
      {"sum_dim0", {{7, 9, 3}}, [](auto& x) { return sum(x[0], 0); }},
      {"mean_last_keepdim", {{7, 9, 3}}, [](auto& x) { return mean(x[0], -1, true); }},
      {"gather", {{4, 11}},
       [](auto& x) {
         Tensor idx = Tensor::from_vector<int64_t>({10, 0, 3, 3, 5, 5, 1, 2}, {4, 2});
         return gather(x[0], 1, idx);
       }},
      {"matmul_batched", {{2, 5, 7}, {2, 7, 3}}, [](auto& x) { return matmul(x[0], x[1]); }},
      {"matmul_shared_transposed", {{2, 5, 7}, {3, 7}}, [](auto& x) { return matmul(x[0], x[1].transpose(0, 1)); }},
      {"linear_bias", {{2, 3, 33}, {17, 33}, {17}}, [](auto& x) { return linear(x[0], x[1], x[2]); }},
      {"embedding", {{13, 6}},
       [](auto& x) {
         Tensor ids = Tensor::from_vector<int32_t>({3, 0, 12, 3, 3, 7}, {2, 3});
         return embedding(x[0], ids);
       }},
      {"rmsnorm", {{9, 40}, {40}}, [](auto& x) { return rmsnorm(x[0], x[1], 1e-6); }},
      {"layernorm", {{9, 40}, {40}, {40}}, [](auto& x) { return layernorm(x[0], x[1], x[2], 1e-5); }},
      {"rope_left_padded", {{2, 5, 3, 8}},
       [](auto& x) {
         Tensor pos = Tensor::from_vector<int64_t>({0, 1, 2, 3, 4, 0, 0, 0, 1, 2}, {2, 5});
         return rope(x[0], pos, 10000.0);
       }},
      {"swiglu", {{4, 50}, {4, 50}}, [](auto& x) { return swiglu(x[0], x[1]); }, -3, 3},
      {"token_logprobs", {{5, 16}, {300, 16}},
       [](auto& x) {
         Tensor t = Tensor::from_vector<int64_t>({0, 299, 17, 17, 150}, {5});
         return token_logprobs(x[0], x[1], t).logprobs;
       },
       -2, 2, 1e-4, 1e-5},
      {"mlp_block", {{2, 4, 16}, {16}, {32, 16}, {32, 16}, {16, 32}},
       [](auto& x) {
         Tensor h = rmsnorm(x[0], x[1], 1e-6);
         return add(x[0], linear(swiglu(linear(h, x[2]), linear(h, x[3])), x[4]));
       }},
      {"patch_embed", {{5, 3 * 4 * 4}, {5}, {6, 5}},
       [](auto& x) {
         Tensor img = random_tensor({2, 3, 8, 12}, 140, DType::f32).to(x[0].device());
         return patch_embed(img, x[0], x[1], x[2], 4);
       }},
      // bf16 tensor-core attention on the device: bf16 tolerances.
      {"attention_causal_left_padded_gqa", {{2, 37, 4, 64}, {2, 37, 2, 64}, {2, 37, 2, 64}},
       [](auto& x) {
         std::vector<int32_t> mask(2 * 37, 1);
         for (int j = 0; j < 5; ++j) mask[37 + j] = 0;  // row 1 is left padded by 5
         AttentionOptions opt;
         opt.causal = true;
         opt.key_mask = Tensor::from_vector(mask, {2, 37}, DType::i32, x[0].device());
         return attention(x[0], x[1], x[2], opt);
       },
       -1, 1, 3e-2, 3e-2},
      {"attention_bidirectional_d128", {{1, 20, 2, 128}, {1, 70, 2, 128}, {1, 70, 2, 128}},
       [](auto& x) {
         AttentionOptions opt;
         opt.causal = false;
         return attention(x[0], x[1], x[2], opt);
       },
       -1, 1, 3e-2, 3e-2},
      // The Qwen2.5-VL ViT's window attention (model/qwen25vl.cpp segment_attention): head
      // dim 80, windows as a batch right-padded by a key mask, bidirectional.
      {"attention_windows_d80", {{3, 20, 2, 80}, {3, 20, 2, 80}, {3, 20, 2, 80}},
       [](auto& x) {
         std::vector<int32_t> mask(3 * 20, 0);
         for (int w = 0, len[3] = {20, 7, 13}; w < 3; ++w)
           for (int j = 0; j < len[w]; ++j) mask[w * 20 + j] = 1;
         AttentionOptions opt;
         opt.causal = false;
         opt.key_mask = Tensor::from_vector(mask, {3, 20}, DType::i32, x[0].device());
         return attention(x[0], x[1], x[2], opt);
       },
       -1, 1, 3e-2, 3e-2},
      {"cross_entropy_ignore", {{6, 19}},
       [](auto& x) {
         Tensor t = Tensor::from_vector<int64_t>({3, -100, 18, 0, 7, 7}, {6});
         return cross_entropy(x[0], t);
       },
       -3, 3},
  };
}


}  // namespace visplay::test
