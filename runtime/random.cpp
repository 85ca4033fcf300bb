#include "runtime/random.h"

#include <cmath>
#include <utility>
#include <vector>

namespace visplay {

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void Rng::seed_with(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : state) s = splitmix64(x);
}

uint64_t Rng::next_u64() {
  uint64_t result = rotl(state[1] * 5, 7) * 9;
  uint64_t t = state[1] << 17;
  state[2] ^= state[0];
  state[3] ^= state[1];
  state[1] ^= state[2];
  state[0] ^= state[3];
  state[2] ^= t;
  state[3] = rotl(state[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

double Rng::normal() {
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

int64_t Rng::randint(int64_t lo, int64_t hi) {
  uint64_t span = static_cast<uint64_t>(hi - lo);
  return lo + static_cast<int64_t>(next_u64() % span);
}

Tensor randn(const Shape& shape, Rng& rng, double std, DType dtype, Device device) {
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = rng.normal() * std;
  return Tensor::from_vector(v, shape, dtype, device);
}

Tensor rand_uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype,
                    Device device) {
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = rng.uniform(lo, hi);
  return Tensor::from_vector(v, shape, dtype, device);
}

std::vector<size_t> permutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = i;
  Rng rng(seed);
  for (size_t i = n; i > 1; --i) {
    std::swap(p[i - 1], p[static_cast<size_t>(rng.randint(0, static_cast<int64_t>(i)))]);
  }
  return p;
}

}  // namespace visplay
