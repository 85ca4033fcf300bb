// test-backend-ops for the sim backend: every op that has a device kernel runs
// on sim (the CUDA sources through the SIMT emulator) and on cpu with the same
// random inputs; outputs and input gradients must agree. Each case runs under
// two emulator seeds, so a missing barrier shows up as a mismatch.
#include <gtest/gtest.h>

#include <functional>

#include "kernels/simt/simt.h"
#include "runtime/ops.h"
#include "runtime/optim.h"
#include "tests/runtime/backend_cases.h"

using namespace visplay;
using namespace visplay::test;

namespace {

class BackendOpsSim : public ::testing::TestWithParam<std::tuple<int, uint64_t>> {};

TEST_P(BackendOpsSim, MatchesCpu) {
  auto [which, seed] = GetParam();
  simt::set_seed(seed);
  run_case(cases()[which], kSim);
}

INSTANTIATE_TEST_SUITE_P(Ops, BackendOpsSim,
                         ::testing::Combine(::testing::Range(0, static_cast<int>(cases().size())),
                                            ::testing::Values(uint64_t{1}, uint64_t{2})),
                         [](const ::testing::TestParamInfo<std::tuple<int, uint64_t>>& info) {
                           return cases()[std::get<0>(info.param)].name + "_seed" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(BackendOpsSim, AdamWStepMatchesCpu) {
  std::vector<Tensor> cpu_params, sim_params;
  for (int i = 0; i < 3; ++i) {
    Tensor p = test::random_tensor({7 + i * 5}, 30 + i, DType::f32);
    Tensor g = test::random_tensor({7 + i * 5}, 40 + i, DType::f32);
    cpu_params.push_back(p.clone().detach().set_requires_grad());
    sim_params.push_back(p.to(kSim).detach().set_requires_grad());
    cpu_params.back().set_grad(g);
    sim_params.back().set_grad(g.to(kSim));
  }
  AdamWOptions o{1e-2, 0.9, 0.99, 1e-8, 0.1};
  AdamW cpu_opt(cpu_params, o), sim_opt(sim_params, o);
  for (int step = 0; step < 3; ++step) {
    cpu_opt.step();
    sim_opt.step();
  }
  // The sim kernel evaluates the cpu kernel's f32 expressions in the same order: bit-equal.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(sim_params[i].to_vector<float>(), cpu_params[i].to_vector<float>());
    EXPECT_EQ(sim_opt.exp_avg()[i].to_vector<float>(), cpu_opt.exp_avg()[i].to_vector<float>());
    EXPECT_EQ(sim_opt.exp_avg_sq()[i].to_vector<float>(),
              cpu_opt.exp_avg_sq()[i].to_vector<float>());
  }
}

// Mixed precision on the device: bf16 parameters with f32 masters (mixed with an f32
// parameter in the same launch) step bit for bit as on cpu, and each bf16 parameter is its
// master rounded to nearest even.
TEST(BackendOpsSim, AdamWBf16MasterMatchesCpu) {
  std::vector<Tensor> cpu_params, sim_params;
  for (int i = 0; i < 4; ++i) {
    DType t = i == 2 ? DType::f32 : DType::bf16;
    Tensor p = test::random_tensor({300 + i * 37}, 60 + i, DType::f32).to(t);
    cpu_params.push_back(p.clone().detach().set_requires_grad());
    sim_params.push_back(p.to(kSim).detach().set_requires_grad());
  }
  AdamWOptions o{3e-3, 0.9, 0.95, 1e-8, 0.05};
  o.master_weights = true;
  AdamW cpu_opt(cpu_params, o), sim_opt(sim_params, o);
  ASSERT_TRUE(sim_opt.master()[0].defined());
  EXPECT_EQ(sim_opt.master()[0].device(), kSim);
  for (int step = 0; step < 4; ++step) {
    for (int i = 0; i < 4; ++i) {
      // The gradient in the dtype the autograd accumulates it in (f32 for bf16 parameters).
      Tensor g = test::random_tensor(cpu_params[i].shape(), 70 + 10 * step + i, DType::f32)
                     .to(leaf_grad_dtype(cpu_params[i].dtype()));
      cpu_params[i].set_grad(g);
      sim_params[i].set_grad(g.to(kSim));
    }
    cpu_opt.step();
    sim_opt.step();
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(sim_params[i].to_vector<float>(), cpu_params[i].to_vector<float>()) << i;
    EXPECT_EQ(sim_opt.exp_avg()[i].to_vector<float>(), cpu_opt.exp_avg()[i].to_vector<float>());
    EXPECT_EQ(sim_opt.exp_avg_sq()[i].to_vector<float>(),
              cpu_opt.exp_avg_sq()[i].to_vector<float>());
    if (i == 2) continue;
    std::vector<float> master = sim_opt.master()[i].to_vector<float>();
    EXPECT_EQ(master, cpu_opt.master()[i].to_vector<float>()) << i;
    std::vector<float> param = sim_params[i].to_vector<float>();
    for (size_t k = 0; k < master.size(); ++k)
      ASSERT_EQ(param[k], static_cast<float>(bf16(master[k]))) << i << " " << k;
  }
  // Without master weights a device bf16 parameter is refused with a clear error.
  Tensor lone = sim_params[0].detach().clone().detach().set_requires_grad();
  try {
    AdamW bad({lone}, AdamWOptions{});
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("master_weights"), std::string::npos) << e.what();
  }
}

// Micro-batch accumulation into a bf16 leaf on sim: an f32 .grad, bit for bit the cpu one, and
// within f32 rounding of the float64 sum.
TEST(BackendOpsSim, Bf16LeafGradientAccumulatesInF32) {
  const int k = 8;
  MicroBatchAccumulation sim = accumulate_bf16_micro_batches(kSim, 700, k, 80);
  MicroBatchAccumulation cpu = accumulate_bf16_micro_batches(kCPU, 700, k, 80);
  EXPECT_EQ(sim.grad_dtype, DType::f32);
  EXPECT_EQ(sim.grad, cpu.grad);
  for (size_t i = 0; i < sim.grad.size(); ++i)
    ASSERT_LE(std::fabs(sim.grad[i] - sim.reference[i]), (k - 1) * std::ldexp(sim.abs_sum[i], -24))
        << "element " << i;
  EXPECT_GT(max_abs_error(sim.bf16_sum, sim.reference),
            10 * max_abs_error(sim.grad, sim.reference));
}

TEST(BackendOpsSim, GroupAdvantagesMatchCpu) {
  Tensor r = test::random_tensor({5, 8}, 3, DType::f32, 0, 1);
  for (bool unbiased : {true, false})
    for (bool by_std : {true, false}) {
      kernels::cpu::AdvantageOptions o;
      o.unbiased_std = unbiased;
      o.scale_by_std = by_std;
      Tensor sim = group_advantages(r.to(kSim), o);
      EXPECT_EQ(sim.device(), kSim);
      EXPECT_TRUE(test::all_close(sim.to_vector<double>(), group_advantages(r, o).to_vector<double>(), 1e-5, 1e-6));
    }
}

TEST(BackendOpsSim, GrpoLossMatchesCpu) {
  const int64_t N = 3, L = 50;
  Tensor lp = test::random_tensor({N, L}, 4, DType::f32, -3, -0.1);
  Tensor old = sub(lp, test::random_tensor({N, L}, 5, DType::f32, -1.5, 1.5));
  Tensor ref = sub(lp, test::random_tensor({N, L}, 6, DType::f32, -0.5, 0.5));
  Tensor adv = test::random_tensor({N, L}, 7, DType::f32, -2, 2);
  Tensor mask = Tensor::from_vector(std::vector<float>(N * L, 1.0f), {N, L});
  kernels::cpu::GrpoLossOptions o;
  o.kl_coef = 0.05;
  kernels::cpu::GrpoLossStats cs, ss;
  Tensor lp_cpu = lp.detach().set_requires_grad(), lp_sim = lp.to(kSim).detach().set_requires_grad();
  Tensor lc = grpo_loss(lp_cpu, old, ref, adv, mask, o, &cs);
  Tensor ls = grpo_loss(lp_sim, old.to(kSim), ref.to(kSim), adv.to(kSim), mask.to(kSim), o, &ss);
  EXPECT_NEAR(ls.item(), lc.item(), 1e-5);
  EXPECT_NEAR(ss.clip_fraction, cs.clip_fraction, 1e-6);
  lc.backward();
  ls.backward();
  EXPECT_TRUE(test::all_close(lp_sim.grad().to_vector<double>(), lp_cpu.grad().to_vector<double>(), 1e-4, 1e-7));
}

}  // namespace
