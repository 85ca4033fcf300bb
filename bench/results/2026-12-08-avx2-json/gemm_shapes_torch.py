import torch, time
torch.set_num_threads(1)
shapes=[(64,128,128,"dec q/o"),(64,64,128,"dec k/v"),(64,320,128,"dec gate/up"),(64,128,320,"dec down"),(64,277,128,"lm head"),(640,128,128,"trn q fwd"),(640,320,128,"trn gate fwd"),(1024,96,96,"vit qkv")]
for M,N,K,name in shapes:
    a=torch.randn(M,K); w=torch.randn(N,K)
    best=1e9
    for rep in range(7):
        it=max(1,200000000//(M*N*K))
        t=time.perf_counter()
        for i in range(it): torch.nn.functional.linear(a,w)
        best=min(best,(time.perf_counter()-t)/it)
    print(f"{name:12s} {M}x{N}x{K} {2*M*N*K/best/1e9:6.1f} GFLOP/s {best*1e6:7.1f} us")
