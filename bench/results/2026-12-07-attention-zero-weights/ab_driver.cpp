// A/B timing + bit check of attention_forward/backward at the demo's shapes.
#include "kernels/cpu/attention.h"
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
using namespace visplay::kernels::cpu;
static uint64_t fnv(const std::vector<float>& v, uint64_t h = 1469598103934665603ull) {
  const unsigned char* p = (const unsigned char*)v.data();
  for (size_t i = 0; i < v.size() * 4; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
int main(int argc, char** argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 200;
  AttentionShape shapes[2] = {{16, 64, 64, 4, 4, 24, false, 1 / std::sqrt(24.0)},
                              {16, 40, 40, 4, 2, 32, true, 1 / std::sqrt(32.0)}};
  for (auto& s : shapes) {
    std::mt19937 g(5);
    std::normal_distribution<float> n;
    size_t nq = s.B * s.Sq * s.H * s.D, nk = s.B * s.Sk * s.Hkv * s.D;
    std::vector<float> q(nq), k(nk), v(nk), dout(nq), out(nq), lse(s.B * s.H * s.Sq), dq(nq), dk(nk), dv(nk);
    for (auto* t : {&q, &k, &v, &dout}) for (auto& x : *t) x = n(g);
    std::vector<int32_t> mask(s.B * s.Sk, 1);
    for (int b = 0; b < s.B; ++b) for (int j = 0; j < b % 5; ++j) mask[b * s.Sk + j] = 0;
    double tf = 1e9, tb = 1e9;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      attention_forward(s, q.data(), k.data(), v.data(), mask.data(), out.data(), lse.data());
      auto t1 = std::chrono::steady_clock::now();
      attention_backward(s, q.data(), k.data(), v.data(), mask.data(), out.data(), lse.data(), dout.data(), dq.data(), dk.data(), dv.data());
      auto t2 = std::chrono::steady_clock::now();
      tf = std::min(tf, std::chrono::duration<double>(t1 - t0).count());
      tb = std::min(tb, std::chrono::duration<double>(t2 - t1).count());
    }
    uint64_t h = fnv(out); h = fnv(lse, h); h = fnv(dq, h); h = fnv(dk, h); h = fnv(dv, h);
    printf("S=%ld D=%ld causal=%d  fwd %.3f ms  bwd %.3f ms  hash %016lx\n", (long)s.Sq, (long)s.D, s.causal, tf * 1e3, tb * 1e3, (unsigned long)h);
  }
}
