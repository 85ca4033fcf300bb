// A decode step's GEMM sequence (4 layers: q,k,v(bias) o, gate, up, down; LM head), each with its
// own weights (2.8 MB in all, as in the demo model), 1 thread; base vs new alternating.
#include <vector>
#include <cstdio>
#include <ctime>
#include <random>
#include <algorithm>
#include <cstdint>
#include <array>
namespace visplay::kernels::cpu { void gemm_f32_packed(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*, int64_t, const float*); }
namespace visplay_base::kernels::cpu { void gemm_f32_packed(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*, int64_t, const float*); }
double now(){ timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t); return t.tv_sec+1e-9*t.tv_nsec; }
struct L { int64_t N, K; bool bias; std::vector<float> w, b; };
int main(int argc, char** argv){
  int64_t M = atoi(argv[1]); int reps = atoi(argv[2]);
  std::mt19937 r(1); std::uniform_real_distribution<float> u(-1,1);
  std::vector<L> ls;
  for (int l=0;l<4;++l) for (auto s : std::vector<std::array<int64_t,3>>{{128,128,1},{64,128,1},{64,128,1},{128,128,0},{320,128,0},{320,128,0},{128,320,0}}) ls.push_back({s[0],s[1],s[2]!=0,{},{}});
  ls.push_back({277,128,false,{},{}});
  double flops=0;
  for (auto& l : ls) { l.w.resize(l.N*l.K); for (auto& x : l.w) x=u(r); l.b.resize(l.N); for (auto& x : l.b) x=u(r); flops += 2.0*M*l.N*l.K; }
  std::vector<float> a(M*320), c(M*320);
  for (auto& x : a) x = u(r);
  std::vector<double> t[2];
  for (int rep=0; rep<reps; ++rep) for (int w=0; w<2; ++w) {
    int which = (rep & 1) ? w : 1 - w;  // alternate who goes first
    double t0=now();
    for (auto& l : ls) {
      if (which==0) visplay_base::kernels::cpu::gemm_f32_packed(false,true,M,l.N,l.K,1.f,a.data(),l.K,l.w.data(),l.K,l.bias?1.f:0.f,c.data(),l.N,l.bias?l.b.data():nullptr);
      else visplay::kernels::cpu::gemm_f32_packed(false,true,M,l.N,l.K,1.f,a.data(),l.K,l.w.data(),l.K,l.bias?1.f:0.f,c.data(),l.N,l.bias?l.b.data():nullptr);
    }
    t[which].push_back(now()-t0);
  }
  for (int w=0; w<2; ++w) { std::sort(t[w].begin(), t[w].end()); }
  printf("M %ld: base min %.1f med %.1f us (%.0f GF/s) | new min %.1f med %.1f us (%.0f GF/s) | min ratio %.3f med ratio %.3f\n", M,
    t[0][0]*1e6, t[0][reps/2]*1e6, flops/t[0][0]*1e-9, t[1][0]*1e6, t[1][reps/2]*1e6, flops/t[1][0]*1e-9, t[0][0]/t[1][0], t[0][reps/2]/t[1][reps/2]);
}
