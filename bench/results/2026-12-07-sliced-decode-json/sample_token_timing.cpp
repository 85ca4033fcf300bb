#include <cstdio>
#include <ctime>
#include <vector>
#include <random>
#include "model/sampler.h"
#include "runtime/random.h"
using namespace visplay;
double now(){ timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+1e-9*t.tv_nsec; }
int main(int argc, char** argv) {
  int64_t V = atoi(argv[1]); double top_p = atof(argv[2]); double scale = atof(argv[3]);
  std::mt19937 g(1); std::normal_distribution<float> n(0, scale);
  std::vector<float> logits(V); for (auto& x : logits) x = n(g);
  SamplingOptions opt; opt.temperature = 1.0; opt.top_p = top_p;
  Rng rng(7);
  int reps = 20; double t0 = now(); int64_t sum = 0;
  for (int i = 0; i < reps; ++i) { float lp; sum += sample_token(logits.data(), V, opt, rng, &lp); }
  printf("V %ld top_p %.2f scale %.1f: %.3f ms per token (%ld)\n", V, top_p, scale, (now()-t0)/reps*1e3, sum);
}
