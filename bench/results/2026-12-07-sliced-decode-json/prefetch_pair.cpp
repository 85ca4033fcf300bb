#include <cstdio>
#include <ctime>
#include <algorithm>
#include <vector>
#include "bench/demo_setup.h"
#include "model/sampler.h"
#include "runtime/tensor.h"
namespace visplay::kernels::cpu { extern bool g_prefetch; }
using namespace visplay;
double now(){ timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t); return t.tv_sec+1e-9*t.tv_nsec; }
double wall(){ timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+1e-9*t.tv_nsec; }
int main(int argc, char** argv) {
  int rounds = atoi(argv[1]);
  VLM model(bench::demo_config());
  model.init_weights(1234);
  NoGradGuard ng;
  auto prompts = bench::demo_prompts(model.config(), 8, 7);
  auto seeds = derive_seeds(11, 64);
  SamplingOptions opt; opt.temperature = 1.0; opt.max_new_tokens = 32;
  std::vector<double> t[2];
  for (int r = 0; r < rounds; ++r) for (int w = 0; w < 2; ++w) {
    int on = (r & 1) ? w : 1 - w;
    kernels::cpu::g_prefetch = on;
    double t0 = wall();
    auto out = generate(model, prompts, 8, opt, seeds);
    t[on].push_back(wall() - t0);
  }
  for (auto& v : t) std::sort(v.begin(), v.end());
  printf("prefetch off: min %.2f med %.2f ms | on: min %.2f med %.2f ms | ratio min %.3f med %.3f\n", t[0][0]*1e3, t[0][rounds/2]*1e3, t[1][0]*1e3, t[1][rounds/2]*1e3, t[0][0]/t[1][0], t[0][rounds/2]/t[1][rounds/2]);
}
