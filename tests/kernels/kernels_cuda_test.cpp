// The kernels on the cuda backend (a real GPU), each against the sim backend on the same
// inputs (the sim results are themselves checked against float64 in *_sim_test.cpp), and
// cuBLASLt against our tiled GEMMs. Skips when the build has no CUDA or the machine no GPU.
#include <gtest/gtest.h>

#include "tests/kernels/reference.h"

#ifdef VISPLAY_HAVE_CUDA
#include <cuda_runtime.h>

#include "visplay/kernels/adamw.h"
#include "visplay/kernels/advantage.h"
#include "visplay/kernels/attention.h"
#include "visplay/kernels/elementwise.h"
#include "visplay/kernels/embedding.h"
#include "visplay/kernels/gemm.h"
#include "visplay/kernels/grpo.h"
#include "visplay/kernels/logprob.h"
#include "visplay/kernels/norm.h"
#include "visplay/kernels/rope.h"
#include "visplay/kernels/swiglu.h"
#include "visplay/kernels/vision.h"

namespace {

namespace cu = visplay::kernels::cuda;
namespace sim = visplay::kernels::sim;
using visplay::test::poisoned;
using visplay::test::random_floats;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// A device copy of a host vector; back() copies it to the host after a synchronize.
template <class T>
struct Device {
  T* ptr = nullptr;
  size_t n = 0;
  explicit Device(const std::vector<T>& host) : n(host.size()) {
    check(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
    check(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice),
          "cudaMemcpy to device");
  }
  ~Device() { cudaFree(ptr); }
  std::vector<T> back() const {
    std::vector<T> host(n);
    check(cudaDeviceSynchronize(), "kernel execution");
    check(cudaMemcpy(host.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost),
          "cudaMemcpy to host");
    return host;
  }
};

std::vector<double> widen(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

class KernelsCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(KernelsCuda, AdvantageAndGrpoLoss) {
  int groups = 37, g = 8, n = 5000;
  auto r = random_floats(groups * g, 1);
  Device<float> dr(r), da(poisoned(r.size()));
  cu::group_advantage(dr.ptr, groups, g, true, true, 1e-6f, da.ptr, nullptr);
  auto want = poisoned(r.size());
  sim::group_advantage(r.data(), groups, g, true, true, 1e-6f, want.data(), nullptr);
  visplay::test::expect_close(da.back(), widen(want), 1e-5, 1e-6, "advantage");

  auto lp = random_floats(n, 2, -3.0f, -0.1f), old = random_floats(n, 3, -3.0f, -0.1f);
  auto ref = random_floats(n, 4, -3.0f, -0.1f), adv = random_floats(n, 5, -2.0f, 2.0f);
  std::vector<float> mask(n);
  for (int i = 0; i < n; ++i) mask[i] = (i % 7) ? 1.0f : 0.0f;
  Device<float> dlp(lp), dold(old), dref(ref), dadv(adv), dmask(mask), dgrad(poisoned(n)),
      dstats(poisoned(4));
  cu::GrpoLossOptions co;
  cu::grpo_loss(dlp.ptr, dold.ptr, dref.ptr, dadv.ptr, dmask.ptr, n, co, dgrad.ptr, dstats.ptr,
                nullptr);
  auto grad = poisoned(n), stats = poisoned(4);
  sim::grpo_loss(lp.data(), old.data(), ref.data(), adv.data(), mask.data(), n, {}, grad.data(),
                 stats.data(), nullptr);
  visplay::test::expect_close(dgrad.back(), widen(grad), 1e-5, 1e-9, "grpo grad");
  visplay::test::expect_close(dstats.back(), widen(stats), 1e-5, 1e-7, "grpo stats");
}

TEST_F(KernelsCuda, NormsRopeSwigluEmbeddingAdamW) {
  int rows = 67, dim = 896;
  auto x = random_floats(rows * dim, 10), w = random_floats(dim, 11, 0.5f, 1.5f),
       dy = random_floats(rows * dim, 12);
  Device<float> dx_in(x), dw(w), ddy(dy), dy_out(poisoned(x.size())), drstd(poisoned(rows)),
      ddx(poisoned(x.size())), ddw(poisoned(dim));
  cu::rmsnorm_forward(dx_in.ptr, dw.ptr, rows, dim, 1e-6f, dy_out.ptr, drstd.ptr, nullptr);
  cu::rmsnorm_backward(dx_in.ptr, dw.ptr, drstd.ptr, ddy.ptr, rows, dim, ddx.ptr, ddw.ptr, nullptr);
  auto y = poisoned(x.size()), rstd = poisoned(rows), gx = poisoned(x.size()), gw = poisoned(dim);
  sim::rmsnorm_forward(x.data(), w.data(), rows, dim, 1e-6f, y.data(), rstd.data(), nullptr);
  sim::rmsnorm_backward(x.data(), w.data(), rstd.data(), dy.data(), rows, dim, gx.data(), gw.data(),
                        nullptr);
  visplay::test::expect_close(dy_out.back(), widen(y), 1e-5, 1e-6, "rmsnorm y");
  visplay::test::expect_close(ddx.back(), widen(gx), 1e-4, 1e-5, "rmsnorm dx");
  visplay::test::expect_close(ddw.back(), widen(gw), 1e-4, 1e-4, "rmsnorm dw");

  int tokens = 50, heads = 4, hd = 128;
  auto q = random_floats(tokens * heads * hd, 13);
  auto pos = visplay::test::random_ints(tokens, 14, 0, 4000);
  Device<float> dq(q), dqo(poisoned(q.size()));
  Device<int> dpos(pos);
  cu::rope(dq.ptr, dpos.ptr, tokens, heads, hd, 1e6f, false, dqo.ptr, nullptr);
  auto qo = poisoned(q.size());
  sim::rope(q.data(), pos.data(), tokens, heads, hd, 1e6f, false, qo.data(), nullptr);
  visplay::test::expect_close(dqo.back(), widen(qo), 1e-4, 1e-4,
                              "rope");  // fast sin/cos on the GPU

  long n = 100003;
  auto gate = random_floats(n, 15, -4.0f, 4.0f), up = random_floats(n, 16);
  Device<float> dg(gate), du(up), dsy(poisoned(n));
  cu::swiglu_forward(dg.ptr, du.ptr, n, dsy.ptr, nullptr);
  auto sy = poisoned(n);
  sim::swiglu_forward(gate.data(), up.data(), n, sy.data(), nullptr);
  visplay::test::expect_close(dsy.back(), widen(sy), 1e-5, 1e-6, "swiglu");

  int vocab = 1000, edim = 64, etok = 3000;
  auto ids = visplay::test::random_ints(etok, 17, 0, vocab - 1);
  auto edy = random_floats(etok * edim, 18);
  std::vector<float> table(vocab * edim, 0.0f);
  Device<int> dids(ids);
  Device<float> dedy(edy), dtable(table);
  cu::embedding_backward(dids.ptr, etok, dedy.ptr, edim, vocab, dtable.ptr, nullptr);
  sim::embedding_backward(ids.data(), etok, edy.data(), edim, vocab, table.data(), nullptr);
  auto got_table = dtable.back();
  EXPECT_EQ(std::memcmp(got_table.data(), table.data(), table.size() * 4), 0)
      << "embedding backward must be bit-identical (same summation order)";

  auto p = random_floats(5000, 19), gr = random_floats(5000, 20),
       m = random_floats(5000, 21, -0.1f, 0.1f);
  auto v = random_floats(5000, 22, 0.0f, 0.01f);
  Device<float> dp(p), dgr(gr), dm(m), dv(v);
  cu::AdamWTensor ct{dp.ptr, dgr.ptr, dm.ptr, dv.ptr, 5000};
  cu::AdamWOptions co;
  co.step = 5;
  cu::adamw_multi(&ct, 1, co, nullptr);
  sim::AdamWTensor st{p.data(), gr.data(), m.data(), v.data(), 5000};
  sim::AdamWOptions so;
  so.step = 5;
  sim::adamw_multi(&st, 1, so, nullptr);
  visplay::test::expect_close(dp.back(), widen(p), 1e-6, 1e-7, "adamw param");
}

TEST_F(KernelsCuda, GemmCublasLtAndTiled) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      int M = 130, N = 75, K = 200;
      int lda = ta ? M : K, ldb = tb ? K : N;
      auto A = visplay::test::from_bf16(visplay::test::to_bf16(random_floats(M * K, 30)));
      auto B = visplay::test::from_bf16(visplay::test::to_bf16(random_floats(K * N, 31)));
      auto Ab = visplay::test::to_bf16(A), Bb = visplay::test::to_bf16(B);
      auto want = poisoned(M * N);
      sim::gemm_f32(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, want.data(), N,
                    nullptr);
      Device<float> dA(A), dB(B), dC1(poisoned(M * N)), dC2(poisoned(M * N)), dC3(poisoned(M * N)),
          dC4(poisoned(M * N));
      Device<uint16_t> dAb(Ab), dBb(Bb);
      cu::gemm_f32(ta, tb, M, N, K, 1.0f, dA.ptr, lda, dB.ptr, ldb, 0.0f, dC1.ptr, N, nullptr);
      cu::gemm_f32_tiled(ta, tb, M, N, K, 1.0f, dA.ptr, lda, dB.ptr, ldb, 0.0f, dC2.ptr, N,
                         nullptr);
      cu::gemm_bf16(ta, tb, M, N, K, 1.0f, dAb.ptr, lda, dBb.ptr, ldb, 0.0f, dC3.ptr, N, nullptr);
      cu::gemm_bf16_tiled(ta, tb, M, N, K, 1.0f, dAb.ptr, lda, dBb.ptr, ldb, 0.0f, dC4.ptr, N,
                          nullptr);
      std::string what = std::string(ta ? "T" : "N") + (tb ? "T" : "N");
      // cuBLASLt may use TF32 for f32 only if asked; it is not, so f32 tolerances hold.
      visplay::test::expect_close(dC1.back(), widen(want), 1e-4, 1e-4, "cublasLt f32 " + what);
      visplay::test::expect_close(dC2.back(), widen(want), 1e-4, 1e-4, "tiled f32 " + what);
      visplay::test::expect_close(dC3.back(), widen(want), 1e-4, 1e-4, "cublasLt bf16 " + what);
      visplay::test::expect_close(dC4.back(), widen(want), 1e-4, 1e-4, "tiled bf16 " + what);
    }
}

TEST_F(KernelsCuda, LogprobFullQwenVocabulary) {
  int T = 37, D = 64, V = 151936;
  auto h = random_floats(T * D, 40), w = random_floats(size_t(V) * D, 41, -0.5f, 0.5f);
  auto tgt = visplay::test::random_ints(T, 42, 0, V - 1);
  auto glp = random_floats(T, 43), gent = random_floats(T, 44);
  Device<float> dh(h), dw(w), dlp(poisoned(T)), dent(poisoned(T)), dlse(poisoned(T)), dglp(glp),
      dgent(gent), ddh(poisoned(T * D)), ddw(poisoned(size_t(V) * D));
  Device<int> dt(tgt);
  cu::logprob_forward(dh.ptr, dw.ptr, dt.ptr, T, D, V, dlp.ptr, dent.ptr, dlse.ptr, nullptr);
  cu::logprob_backward(dh.ptr, dw.ptr, dt.ptr, T, D, V, dlse.ptr, dent.ptr, dglp.ptr, dgent.ptr,
                       ddh.ptr, ddw.ptr, nullptr);
  auto lp = dlp.back();
  for (float x : lp) EXPECT_LE(x, 0.0f);
  // Reference: float64 for the forward; sim for the backward (too slow here at full size,
  // so the sim backward runs on a 2-token slice).
  for (int t = 0; t < T; ++t) {
    double m = -INFINITY;
    std::vector<double> z(V);
    for (int v = 0; v < V; ++v) {
      double acc = 0.0;
      for (int d = 0; d < D; ++d) acc += double(h[t * D + d]) * w[size_t(v) * D + d];
      z[v] = acc;
      m = std::max(m, acc);
    }
    double s = 0.0;
    for (double x : z) s += std::exp(x - m);
    EXPECT_NEAR(lp[t], z[tgt[t]] - m - std::log(s), 1e-4) << t;
  }
  // The bf16 tensor-core forward on the bf16-rounded inputs, against float64.
  auto hb = visplay::test::to_bf16(h), wb = visplay::test::to_bf16(w);
  auto hr = visplay::test::from_bf16(hb), wr = visplay::test::from_bf16(wb);
  Device<uint16_t> dhb(hb), dwb(wb);
  Device<float> dlpb(poisoned(T)), dentb(poisoned(T)), dlseb(poisoned(T));
  cu::logprob_forward_bf16(dhb.ptr, dwb.ptr, dt.ptr, T, D, V, dlpb.ptr, dentb.ptr, dlseb.ptr,
                           nullptr);
  auto lpb = dlpb.back();
  for (int t = 0; t < T; ++t) {
    double m = -INFINITY;
    std::vector<double> z(V);
    for (int v = 0; v < V; ++v) {
      double acc = 0.0;
      for (int d = 0; d < D; ++d) acc += double(hr[t * D + d]) * wr[size_t(v) * D + d];
      z[v] = acc;
      m = std::max(m, acc);
    }
    double s = 0.0;
    for (double x : z) s += std::exp(x - m);
    EXPECT_NEAR(lpb[t], z[tgt[t]] - m - std::log(s), 1e-4) << "bf16 " << t;
    EXPECT_LE(lpb[t], 0.0f);
  }
  auto gh = ddh.back();
  double norm = 0.0;
  for (float x : gh) norm += double(x) * x;
  EXPECT_GT(norm, 0.0);
  EXPECT_TRUE(std::isfinite(norm));
}

TEST_F(KernelsCuda, PatchEmbedAndGelu) {
  int B = 2, C = 3, H = 56, W = 42, P = 14, E = 96, np = (H / P) * (W / P);
  auto img = random_floats(size_t(B) * C * H * W, 50),
       wt = random_floats(size_t(E) * C * P * P, 51);
  auto bias = random_floats(E, 52), pos = random_floats(size_t(np) * E, 53);
  Device<float> dimg(img), dwt(wt), dbias(bias), dpos(pos), dout(poisoned(size_t(B) * np * E));
  cu::patch_embed_forward(dimg.ptr, nullptr, nullptr, nullptr, B, C, H, W, P, dwt.ptr, dbias.ptr,
                          dpos.ptr, E, dout.ptr, nullptr);
  auto out = poisoned(size_t(B) * np * E);
  sim::patch_embed_forward(img.data(), nullptr, nullptr, nullptr, B, C, H, W, P, wt.data(),
                           bias.data(), pos.data(), E, out.data(), nullptr);
  visplay::test::expect_close(dout.back(), widen(out), 1e-4, 1e-4, "patch embed");
}

// The exact GELU (UnaryOp::gelu_erf): the device's erff/expf against the host's.
TEST_F(KernelsCuda, GeluErfMatchesSim) {
  int n = 100001;
  auto x = random_floats(n, 70, -6, 6), dy = random_floats(n, 71);
  Device<float> dx_in(x), ddy(dy), dy_out(poisoned(n)), dgrad(poisoned(n));
  auto op = visplay::kernels::UnaryOp::gelu_erf;
  cu::unary_forward(op, dx_in.ptr, dy_out.ptr, n, 0.0f, nullptr);
  cu::unary_backward(op, ddy.ptr, dx_in.ptr, dy_out.ptr, dgrad.ptr, n, 0.0f, nullptr);
  auto y = poisoned(n), grad = poisoned(n);
  sim::unary_forward(op, x.data(), y.data(), n, 0.0f, nullptr);
  sim::unary_backward(op, dy.data(), x.data(), y.data(), grad.data(), n, 0.0f, nullptr);
  visplay::test::expect_close(dy_out.back(), widen(y), 1e-5, 1e-6, "gelu_erf y");
  visplay::test::expect_close(dgrad.back(), widen(grad), 1e-5, 1e-6, "gelu_erf dx");
}

// Head dim 80 is the Qwen2.5-VL vision tower's (bidirectional, as its windows).
TEST_F(KernelsCuda, FlashAttentionMatchesSim) {
  for (int D : {64, 80, 128}) {
    cu::AttentionShape cs;
    cs.batch = 2;
    cs.q_len = 150;
    cs.kv_len = 150;
    cs.q_heads = 8;
    cs.kv_heads = 2;
    cs.head_dim = D;
    cs.causal = D == 64;
    cs.scale = 1.0f / std::sqrt(float(D));
    sim::AttentionShape ss;
    ss.batch = cs.batch;
    ss.q_len = cs.q_len;
    ss.kv_len = cs.kv_len;
    ss.q_heads = cs.q_heads;
    ss.kv_heads = cs.kv_heads;
    ss.head_dim = D;
    ss.causal = cs.causal;
    ss.scale = cs.scale;
    size_t nq = size_t(cs.batch) * cs.q_len * cs.q_heads * D,
           nk = size_t(cs.batch) * cs.kv_len * cs.kv_heads * D;
    size_t nl = size_t(cs.batch) * cs.q_heads * cs.q_len;
    auto q = visplay::test::to_bf16(random_floats(nq, 60, -2, 2)),
         k = visplay::test::to_bf16(random_floats(nk, 61, -2, 2));
    auto v = visplay::test::to_bf16(random_floats(nk, 62));
    auto dout = random_floats(nq, 63);
    std::vector<int> lens = {150, 111};
    Device<uint16_t> dq(q), dk(k), dv(v);
    Device<float> dout_d(dout), o(poisoned(nq)), lse(poisoned(nl)), delta(poisoned(nl)),
        gq(poisoned(nq)), gk(poisoned(nk)), gv(poisoned(nk));
    Device<int> dlens(lens);
    cu::flash_attention_forward(dq.ptr, dk.ptr, dv.ptr, dlens.ptr, cs, o.ptr, lse.ptr, nullptr);
    cu::flash_attention_backward(dq.ptr, dk.ptr, dv.ptr, dlens.ptr, cs, o.ptr, dout_d.ptr, lse.ptr,
                                 delta.ptr, gq.ptr, gk.ptr, gv.ptr, nullptr);
    auto so = poisoned(nq), slse = poisoned(nl), sdelta = poisoned(nl), sq = poisoned(nq),
         sk = poisoned(nk), sv = poisoned(nk);
    sim::flash_attention_forward(q.data(), k.data(), v.data(), lens.data(), ss, so.data(),
                                 slse.data(), nullptr);
    sim::flash_attention_backward(q.data(), k.data(), v.data(), lens.data(), ss, so.data(),
                                  dout.data(), slse.data(), sdelta.data(), sq.data(), sk.data(),
                                  sv.data(), nullptr);
    std::string what = "D=" + std::to_string(D);
    visplay::test::expect_close(o.back(), widen(so), 1e-3, 1e-3, what + " out");
    visplay::test::expect_close(lse.back(), widen(slse), 1e-4, 1e-4, what + " lse");
    visplay::test::expect_close(gq.back(), widen(sq), 1e-2, 1e-3, what + " dq");
    visplay::test::expect_close(gk.back(), widen(sk), 1e-2, 1e-3, what + " dk");
    visplay::test::expect_close(gv.back(), widen(sv), 1e-2, 1e-3, what + " dv");
  }
}

}  // namespace

#else

TEST(KernelsCuda, NotBuilt) { GTEST_SKIP() << "built without CUDA (VISPLAY_CUDA=OFF or no nvcc)"; }

#endif
