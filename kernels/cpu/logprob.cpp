#include "kernels/cpu/logprob.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/vec_math.h"

namespace visplay::kernels::cpu {

// Per row we keep the running max m, s = sum exp(z - m) and
// t = sum exp(z - m) * z; at the end lse = m + log s and the entropy is
// lse - t / s.
void token_logprobs_forward(const float* hidden, const float* weight, const int64_t* targets,
                            float* logprob, float* entropy, float* lse, int64_t N, int64_t D,
                            int64_t V, int64_t chunk) {
  chunk = std::min(chunk, V);            // no scratch beyond the vocabulary
  std::vector<float> logits(N * chunk);  // (N, chunk)
  std::vector<double> m(N, -INFINITY), s(N, 0.0), t(N, 0.0), target_logit(N, 0.0);
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    int64_t vc = std::min(chunk, V - v0);
    gemm<float>(false, true, N, vc, D, 1.0f, hidden, D, weight + v0 * D, D, 0.0f, logits.data(),
                vc);
#pragma omp parallel
    {
      std::vector<float> exps(vc);  // one row's exps, per thread
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        float* z = logits.data() + n * vc;
        float cmax = -INFINITY;
        for (int64_t j = 0; j < vc; ++j) cmax = std::max(cmax, z[j]);
        // The running max is always one of the f32 logits, so it is exact in
        // f32; exp in f32 (vectorised, <= 2 ulp) and the sums in double.
        double new_m = std::max(m[n], double(cmax));
        double corr = std::exp(m[n] - new_m);
        double sn = s[n] * corr, tn = t[n] * corr;
        const float shift = static_cast<float>(new_m);
        float* e = exps.data();
        for (int64_t j = 0; j < vc; ++j) e[j] = fast_exp(z[j] - shift);
        for (int64_t j = 0; j < vc; ++j) {
          sn += e[j];
          tn += double(e[j]) * z[j];
        }
        m[n] = new_m, s[n] = sn, t[n] = tn;
        int64_t tg = targets[n];
        if (tg >= v0 && tg < v0 + vc) target_logit[n] = z[tg - v0];
      }
    }
  }
  for (int64_t n = 0; n < N; ++n) {
    double l = m[n] + std::log(s[n]);
    lse[n] = static_cast<float>(l);
    // Computed as z - lse with lse >= max z, then clamped: a log-prob is never
    // positive, whatever the rounding.
    logprob[n] = static_cast<float>(std::min(0.0, target_logit[n] - l));
    entropy[n] = static_cast<float>(std::max(0.0, l - t[n] / s[n]));
  }
}

// dlogit[n, v] = dlogprob[n] * (onehot(target) - softmax)[v]
void token_logprobs_backward(const float* hidden, const float* weight, const int64_t* targets,
                             const float* lse, const float* dlogprob, float* dhidden,
                             float* dweight, int64_t N, int64_t D, int64_t V, int64_t chunk) {
  chunk = std::min(chunk, V);
  std::vector<float> dlogits(N * chunk);  // (N, chunk)
  if (dhidden) std::memset(dhidden, 0, N * D * sizeof(float));
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    int64_t vc = std::min(chunk, V - v0);
    gemm<float>(false, true, N, vc, D, 1.0f, hidden, D, weight + v0 * D, D, 0.0f, dlogits.data(),
                vc);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      float* z = dlogits.data() + n * vc;
      float g = dlogprob[n];
      const float l = lse[n];
      for (int64_t j = 0; j < vc; ++j) z[j] = -g * fast_exp(z[j] - l);
      int64_t tg = targets[n];
      if (tg >= v0 && tg < v0 + vc) z[tg - v0] += g;
    }
    if (dhidden)
      gemm<float>(false, false, N, D, vc, 1.0f, dlogits.data(), vc, weight + v0 * D, D, 1.0f,
                  dhidden, D);
    if (dweight)
      gemm<float>(true, false, vc, D, N, 1.0f, dlogits.data(), vc, hidden, D, 0.0f,
                  dweight + v0 * D, D);
  }
}

}  // namespace visplay::kernels::cpu
