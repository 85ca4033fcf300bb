// A small seeded generator (xoshiro256**, seeded through splitmix64) whose
// output is the same on every platform and standard library, plus helpers to
// fill tensors for initialisation and tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/tensor.h"

namespace visplay {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next_u64();
  double uniform();                         // [0, 1)
  double uniform(double lo, double hi);     // [lo, hi)
  double normal();                          // standard normal (Box-Muller)
  int64_t randint(int64_t lo, int64_t hi);  // [lo, hi)
  // The full state, for checkpoints.
  uint64_t state[4];
};

// A seeded Fisher-Yates permutation of 0..n-1.
std::vector<size_t> permutation(size_t n, uint64_t seed);

// New tensors filled on the host, then moved to the device.
Tensor randn(const Shape& shape, Rng& rng, double std = 1.0, DType dtype = DType::f32,
             Device device = kCPU);
Tensor rand_uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype = DType::f32,
                    Device device = kCPU);

}  // namespace visplay
