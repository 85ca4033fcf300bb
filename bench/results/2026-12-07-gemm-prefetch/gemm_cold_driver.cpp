// base vs new packed GEMM at the training step's products (1 thread), thread CPU time, min of reps, alternating
#include <vector>
#include <cstdio>
#include <ctime>
#include <random>
#include <algorithm>
#include <cstdint>
namespace visplay::kernels::cpu { void gemm_f32_packed(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*, int64_t, const float*); }
namespace visplay_base::kernels::cpu { void gemm_f32_packed(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*, int64_t, const float*); }
namespace Nw = visplay::kernels::cpu; namespace Bs = visplay_base::kernels::cpu;
double now(){ timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t); return t.tv_sec+1e-9*t.tv_nsec; }
int main(int argc, char** argv){
  // (rows, out, in, count in the step)
  const int64_t layers[][4] = {{1024, 96, 96, 12},  {1024, 192, 96, 3}, {1024, 96, 192, 3}, {256, 256, 384, 1},
                               {256, 128, 256, 1}, {640, 128, 128, 8}, {640, 64, 128, 8},  {640, 320, 128, 8},
                               {640, 128, 320, 4}, {640, 277, 128, 1}};
  std::mt19937 r(1); std::uniform_real_distribution<float> u(-1,1);
  double tot[2]={0,0}; int reps = argc > 1 ? atoi(argv[1]) : 30;
  for (auto& l : layers) for (int kk=0; kk<3; ++kk) {
    int64_t rows=l[0], out=l[1], in=l[2], cnt=l[3];
    const int64_t M = kk == 2 ? out : rows, N = kk == 0 ? out : in, K = kk == 0 ? in : kk == 1 ? out : rows;
    const bool ta = kk == 2, tb = kk == 0;
    std::vector<float> a(M*K), b(K*N), c[2]={std::vector<float>(M*N),std::vector<float>(M*N)};
    for (auto& x : a) x = u(r); for (auto& x : b) x = u(r);
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    std::vector<float> flush(4<<20);
    double best[2]={1e9,1e9};
    for (int rep=0; rep<reps; ++rep) for (int w=0; w<2; ++w) {
      float* C = c[w].data();
      { volatile float s=0; for (size_t i=0;i<flush.size();i+=16) s+=flush[i]; }  // evict L2 like the step's other ops do
      double t0=now();
      if (w==0) Bs::gemm_f32_packed(ta,tb,M,N,K,1.f,a.data(),lda,b.data(),ldb,0.f,C,N,nullptr);
      else Nw::gemm_f32_packed(ta,tb,M,N,K,1.f,a.data(),lda,b.data(),ldb,0.f,C,N,nullptr);
      best[w]=std::min(best[w],now()-t0);
    }
    tot[0]+=best[0]*cnt; tot[1]+=best[1]*cnt;
    printf("%s %5ld x %4ld x %4ld x%2ld | %7.1f %7.1f us | %.3fx | %5.1f GF/s | %s\n", kk==0?"fwd":kk==1?"dX ":"dW ", M,N,K,cnt, best[0]*1e6, best[1]*1e6, best[0]/best[1], 2.0*M*N*K/best[1]*1e-9, c[0]==c[1]?"same":"DIFF");
  }
  printf("total (weighted by count) %.0f %.0f us  %.3fx\n", tot[0]*1e6, tot[1]*1e6, tot[0]/tot[1]);
}
