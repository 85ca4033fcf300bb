// throwaway: GFLOP/s of gemm_f32_packed at the demo decoder's decode / train shapes
#include "kernels/cpu/gemm.h"
#include <chrono>
#include <cstdio>
#include <vector>
#include <random>
using namespace visplay::kernels::cpu;
int main(){
  struct S{long M,N,K; bool ta,tb; const char* name;};
  S shapes[]={{64,128,128,false,true,"dec q/o"},{64,64,128,false,true,"dec k/v"},{64,320,128,false,true,"dec gate/up"},{64,128,320,false,true,"dec down"},{64,277,128,false,true,"lm head"},
    {640,128,128,false,true,"trn q fwd"},{640,320,128,false,true,"trn gate fwd"},{640,128,320,false,false,"trn down dX"},{320,128,640,true,false,"trn dW"},{1024,96,96,false,true,"vit qkv fwd"},{192,96,1024,true,false,"vit fc1 dW"}};
  std::mt19937 rng(1); std::uniform_real_distribution<float> u(-1,1);
  for(auto s: shapes){
    std::vector<float> A(s.M*s.K), B(s.N*s.K), C(s.M*s.N);
    for(auto&x:A)x=u(rng); for(auto&x:B)x=u(rng);
    long lda = s.ta? s.M : s.K, ldb = s.tb? s.K : s.N;
    double best=1e9;
    for(int rep=0;rep<7;++rep){
      int iters= std::max(1L, 200000000L/(s.M*s.N*s.K));
      auto t0=std::chrono::steady_clock::now();
      for(int i=0;i<iters;++i) gemm_f32_packed(s.ta,s.tb,s.M,s.N,s.K,1.0f,A.data(),lda,B.data(),ldb,0.0f,C.data(),s.N,nullptr);
      double dt=std::chrono::duration<double>(std::chrono::steady_clock::now()-t0).count()/iters;
      best=std::min(best,dt);
    }
    printf("%-12s %5ld x %4ld x %4ld  %6.1f GFLOP/s  %7.1f us\n", s.name, s.M,s.N,s.K, 2.0*s.M*s.N*s.K/best/1e9, best*1e6);
  }
}
