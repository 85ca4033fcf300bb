// test-backend-ops on a real GPU: the same cases as the sim suite, cuda vs
// cpu. Skips cleanly on machines without a GPU (CI, the development VMs).
#include <gtest/gtest.h>

#include "runtime/cuda_device.h"
#include "runtime/optim.h"
#include "tests/runtime/backend_cases.h"

using namespace visplay;
using namespace visplay::test;

namespace {

const Device kCuda{DeviceType::cuda, 0};

class BackendOpsCuda : public ::testing::TestWithParam<int> {};

TEST_P(BackendOpsCuda, MatchesCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU on this machine";
  run_case(cases()[GetParam()], kCuda);
}

INSTANTIATE_TEST_SUITE_P(Ops, BackendOpsCuda, ::testing::Range(0, static_cast<int>(cases().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return cases()[info.param].name;
                         });

// Micro-batch accumulation into a bf16 leaf on the GPU: an f32 .grad, bit for bit the cpu one
// (each contribution is an exact bf16 value and f32 addition rounds the same everywhere).
TEST(BackendOpsCuda, Bf16LeafGradientAccumulatesInF32) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU on this machine";
  const int k = 16;
  MicroBatchAccumulation gpu = accumulate_bf16_micro_batches(kCuda, 5000, k, 90);
  MicroBatchAccumulation cpu = accumulate_bf16_micro_batches(kCPU, 5000, k, 90);
  EXPECT_EQ(gpu.grad_dtype, DType::f32);
  EXPECT_EQ(gpu.grad, cpu.grad);
  for (size_t i = 0; i < gpu.grad.size(); ++i)
    ASSERT_LE(std::fabs(gpu.grad[i] - gpu.reference[i]), (k - 1) * std::ldexp(gpu.abs_sum[i], -24))
        << "element " << i;
}

// Mixed-precision AdamW on the GPU: the f32 masters follow the cpu step to f32 rounding (nvcc
// may contract to FMA) and every bf16 parameter is exactly its master rounded to nearest even.
TEST(BackendOpsCuda, AdamWBf16MasterMatchesCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU on this machine";
  std::vector<Tensor> cpu_params, gpu_params;
  for (int i = 0; i < 3; ++i) {
    Tensor p = random_tensor({1000 + i * 77}, 60 + i, DType::f32).to(DType::bf16);
    cpu_params.push_back(p.clone().detach().set_requires_grad());
    gpu_params.push_back(p.to(kCuda).detach().set_requires_grad());
  }
  AdamWOptions o{3e-3, 0.9, 0.95, 1e-8, 0.05};
  o.master_weights = true;
  AdamW cpu_opt(cpu_params, o), gpu_opt(gpu_params, o);
  for (int step = 0; step < 4; ++step) {
    for (int i = 0; i < 3; ++i) {
      // f32: the dtype the autograd accumulates a bf16 parameter's gradient in.
      Tensor g = random_tensor(cpu_params[i].shape(), 70 + 10 * step + i, DType::f32);
      cpu_params[i].set_grad(g);
      gpu_params[i].set_grad(g.to(kCuda));
    }
    cpu_opt.step();
    gpu_opt.step();
  }
  for (int i = 0; i < 3; ++i) {
    std::vector<float> master = gpu_opt.master()[i].to(kCPU).to_vector<float>();
    EXPECT_TRUE(all_close(gpu_opt.master()[i].to(kCPU).to_vector<double>(),
                          cpu_opt.master()[i].to_vector<double>(), 1e-6, 1e-7));
    std::vector<float> param = gpu_params[i].to(kCPU).to_vector<float>();
    for (size_t k = 0; k < master.size(); ++k)
      ASSERT_EQ(param[k], static_cast<float>(bf16(master[k]))) << i << " " << k;
  }
}

}  // namespace
