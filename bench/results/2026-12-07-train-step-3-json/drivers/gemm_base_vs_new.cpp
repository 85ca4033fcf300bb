// base vs new packed GEMM at the step's 30 products, alternating in one process, best of 40
// (thread CPU time), outputs compared bit for bit; plus linear's forward with bias: fill +
// beta 1 (base) vs gemm_bias (new).
#define visplay visplay_base
#include "/tmp/speed_base/kernels/cpu/gemm.h"
#undef visplay
#include "kernels/cpu/gemm.h"
#include <vector>
#include <cstdio>
#include <ctime>
#include <random>
#include <algorithm>
namespace Nw = visplay::kernels::cpu; namespace Bs = visplay_base::kernels::cpu;
double now(){ timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t); return t.tv_sec+1e-9*t.tv_nsec; }
int main(){
  const int64_t layers[][3] = {{1024, 96, 96},  {1024, 192, 96}, {1024, 96, 192}, {256, 256, 384},
                               {256, 128, 256}, {640, 128, 128}, {640, 64, 128},  {640, 320, 128},
                               {640, 128, 320}, {640, 277, 128}};
  std::mt19937 r(1); std::uniform_real_distribution<float> u(-1,1);
  double tot[2]={0,0};
  for (auto& l : layers) for (int kind=0; kind<4; ++kind) {
    int64_t rows=l[0], out=l[1], in=l[2];
    int kk = kind==3?0:kind;
    const int64_t M = kk == 2 ? out : rows, N = kk == 0 ? out : in, K = kk == 0 ? in : kk == 1 ? out : rows;
    const bool ta = kk == 2, tb = kk == 0;
    std::vector<float> a(M*K), b(K*N), bias(N), c[2]={std::vector<float>(M*N),std::vector<float>(M*N)};
    for (auto& x : a) x = u(r); for (auto& x : b) x = u(r); for (auto& x : bias) x = u(r);
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    double best[2]={1e9,1e9};
    for (int rep=0; rep<40; ++rep) for (int w=0; w<2; ++w) {
      float* C = c[w].data();
      double t0=now();
      if (kind==3) {
        if (w==0) { for (int64_t i=0;i<M;++i) std::copy(bias.begin(),bias.end(),C+i*N); Bs::gemm_f32_packed(ta,tb,M,N,K,1.f,a.data(),lda,b.data(),ldb,1.f,C,N); }
        else Nw::gemm_bias<float>(ta,tb,M,N,K,a.data(),lda,b.data(),ldb,bias.data(),C,N);
      } else if (w==0) Bs::gemm_f32_packed(ta,tb,M,N,K,1.f,a.data(),lda,b.data(),ldb,0.f,C,N);
      else Nw::gemm_f32_packed(ta,tb,M,N,K,1.f,a.data(),lda,b.data(),ldb,0.f,C,N);
      best[w]=std::min(best[w],now()-t0);
    }
    tot[0]+=best[0]; tot[1]+=best[1];
    printf("| %s | %ld x %ld x %ld | %.1f | %.1f | %.3fx | %s |\n", kind==0?"fwd":kind==1?"dX":kind==2?"dW":"fwd + bias", M,N,K, best[0]*1e6, best[1]*1e6, best[0]/best[1], c[0]==c[1]?"same":"DIFF");
  }
  printf("| total | | %.0f | %.0f | %.3fx | |\n", tot[0]*1e6, tot[1]*1e6, tot[0]/tot[1]);
}
