// Embedding lookup and its deterministic backward (no atomics: each thread owns
// a slice of the columns and walks the ids in order).
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// out[i, :] = weight[ids[i], :]; ids must be in [0, V) (checked by the caller).
template <class T>
void embedding_forward(const T* weight, const int64_t* ids, T* out, int64_t n, int64_t D);
// dweight (V x D) is overwritten: dweight[v] = sum over i with ids[i] == v of dout[i].
template <class T>
void embedding_backward(const T* dout, const int64_t* ids, T* dweight, int64_t n, int64_t V,
                        int64_t D);

}  // namespace visplay::kernels::cpu
