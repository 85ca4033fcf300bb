#define visplay visplay_base
#include "/tmp/speed_base/kernels/cpu/attention.h"
#undef visplay
#include "kernels/cpu/attention.h"
#include <vector>
#include <cstdio>
#include <ctime>
#include <cstring>
#include <random>
#include <algorithm>
namespace N = visplay::kernels::cpu; namespace Bs = visplay_base::kernels::cpu;
double now(){ timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t); return t.tv_sec+1e-9*t.tv_nsec; }
int main(int argc,char**argv){
  int reps = argc>1?atoi(argv[1]):15;
  struct C { int64_t B,Sq,Sk,H,Hkv,D; bool causal; bool pad; };
  C cs[] = {{16,64,64,4,4,24,false,false},{16,40,40,4,2,32,true,true}};
  std::mt19937 r(3); std::uniform_real_distribution<float> u(-2,2);
  for (auto c: cs) {
    N::AttentionShape s{c.B,c.Sq,c.Sk,c.H,c.Hkv,c.D,c.causal,1/std::sqrt((double)c.D)};
    Bs::AttentionShape sb{c.B,c.Sq,c.Sk,c.H,c.Hkv,c.D,c.causal,1/std::sqrt((double)c.D)};
    int64_t nq=c.B*c.Sq*c.H*c.D, nk=c.B*c.Sk*c.Hkv*c.D;
    std::vector<float> q(nq),k(nk),v(nk),dout(nq); for(auto*x:{&q,&k,&v,&dout}) for(auto&y:*x) y=u(r);
    std::vector<int32_t> mask(c.B*c.Sk,1); if(c.pad) for(int b=0;b<c.B;++b) for(int j=0;j<b%5;++j) mask[b*c.Sk+j]=0;
    const int32_t* pm = c.pad?mask.data():nullptr;
    std::vector<float> o[2],l[2],dq[2],dk[2],dv[2];
    for(int w=0;w<2;++w){o[w].resize(nq);l[w].resize(c.B*c.H*c.Sq);dq[w].resize(nq);dk[w].resize(nk);dv[w].resize(nk);}
    double bf[2]={1e9,1e9}, bb[2]={1e9,1e9};
    for(int rep=0;rep<reps;++rep) for(int w=0;w<2;++w){
      double t0=now();
      if(w==0) Bs::attention_forward<float>(sb,q.data(),k.data(),v.data(),pm,o[w].data(),l[w].data());
      else N::attention_forward<float>(s,q.data(),k.data(),v.data(),pm,o[w].data(),l[w].data());
      double t1=now();
      if(w==0) Bs::attention_backward<float>(sb,q.data(),k.data(),v.data(),pm,o[w].data(),l[w].data(),dout.data(),dq[w].data(),dk[w].data(),dv[w].data());
      else N::attention_backward<float>(s,q.data(),k.data(),v.data(),pm,o[w].data(),l[w].data(),dout.data(),dq[w].data(),dk[w].data(),dv[w].data());
      double t2=now(); bf[w]=std::min(bf[w],t1-t0); bb[w]=std::min(bb[w],t2-t1);
    }
    bool same = o[0]==o[1] && l[0]==l[1] && dq[0]==dq[1] && dk[0]==dk[1] && dv[0]==dv[1];
    printf("%s: fwd %.0f -> %.0f us (%.2fx)  bwd %.0f -> %.0f us (%.2fx) %s\n", c.causal?"dec":"vit", bf[0]*1e6,bf[1]*1e6,bf[0]/bf[1], bb[0]*1e6,bb[1]*1e6,bb[0]/bb[1], same?"same":"DIFF");
  }
}
