// `visplay demo`: the main job. The ShapeWorld self-evolution demo replaces
// this once the model and RL layers land; until then it runs the smallest
// real thing the project can do and says so: it trains a small attention
// network with the runtime's autograd and AdamW to copy a random teacher.
#include <chrono>
#include <cstdio>

#include "runtime/ops.h"
#include "runtime/optim.h"
#include "runtime/random.h"
#include "tools/cli/command.h"

namespace {

struct DemoOptions {
  int steps = 300;
  uint64_t seed = 0;
};

// One self-attention block: x -> x + attn(norm(x)) -> mean over tokens -> linear
visplay::Tensor student_forward(const std::vector<visplay::Tensor>& p, const visplay::Tensor& x) {
  using namespace visplay;
  int64_t B = x.size(0), S = x.size(1), D = x.size(2);
  Tensor h = rmsnorm(x, p[0], 1e-6);
  Tensor q = linear(h, p[1]).reshape({B, S, 2, D / 2});
  Tensor k = linear(h, p[2]).reshape({B, S, 2, D / 2});
  Tensor v = linear(h, p[3]).reshape({B, S, 2, D / 2});
  AttentionOptions opt;
  opt.causal = false;
  Tensor a = attention(q, k, v, opt).reshape({B, S, D});
  Tensor y = add(x, linear(a, p[4]));
  return linear(gelu(mean(y, 1)), p[5], p[6]);
}

void run_demo(const DemoOptions& o) {
  using namespace visplay;
  std::printf(
      "visplay demo: the ShapeWorld self-evolution demo is not built yet.\n"
      "Running the smallest real job instead: an attention block trained with the\n"
      "runtime's autograd and AdamW to imitate a fixed random teacher.\n\n");
  Rng rng(o.seed);
  const int64_t B = 32, S = 8, D = 16, C = 4;
  auto init = [&](Shape s, double std) { return randn(s, rng, std).set_requires_grad(); };
  std::vector<Tensor> teacher = {Tensor::ones({D}), randn({D, D}, rng, 0.5), randn({D, D}, rng, 0.5),
                                 randn({D, D}, rng, 0.5), randn({D, D}, rng, 0.5),
                                 randn({C, D}, rng, 0.5), randn({C}, rng, 0.1)};
  std::vector<Tensor> student = {Tensor::ones({D}).set_requires_grad(), init({D, D}, 0.1), init({D, D}, 0.1),
                                 init({D, D}, 0.1), init({D, D}, 0.1), init({C, D}, 0.1), init({C}, 0.0)};
  AdamW opt(student, AdamWOptions{3e-3, 0.9, 0.999, 1e-8, 0.0});
  auto start = std::chrono::steady_clock::now();
  double first = 0, last = 0;
  for (int step = 0; step < o.steps; ++step) {
    Tensor x = randn({B, S, D}, rng);
    Tensor target;
    {
      NoGradGuard no_grad;
      target = student_forward(teacher, x);
    }
    Tensor diff = sub(student_forward(student, x), target);
    Tensor loss = mean(mul(diff, diff));
    opt.zero_grad();
    loss.backward();
    clip_grad_norm(student, 1.0);
    opt.step();
    last = loss.item();
    if (step == 0) first = last;
    if (step % 50 == 0 || step == o.steps - 1) std::printf("  step %4d  loss %.5f\n", step, last);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\nloss %.5f -> %.5f in %d steps (%.2f s)\n", first, last, o.steps, secs);
}

void setup_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "Run the main demo (see README)");
  auto opts = std::make_shared<DemoOptions>();
  cmd->add_option("--steps", opts->steps, "training steps")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", opts->seed, "random seed");
  cmd->callback([opts] { run_demo(*opts); });
}

}  // namespace

VISPLAY_COMMAND(setup_demo);
