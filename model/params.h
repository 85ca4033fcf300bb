// A named parameter store: an ordered map name -> Tensor. Order is insertion
// order, so initialisation from a seeded Rng, the optimizer's parameter list
// and checkpoint files are the same on every run.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/random.h"
#include "runtime/tensor.h"

namespace visplay {

// How a parameter is initialised: normal(0, 0.02) weights, ones for norm
// scales, zeros for biases.
enum class Init { normal, ones, zeros };

class ParamStore {
 public:
  // Adds an uninitialised cpu parameter (f32 unless a loader asks for the dtype it will fill
  // in, e.g. bf16 so that no f32 copy of the model is ever allocated); throws on a duplicate
  // name.
  Tensor& add(const std::string& name, const Shape& shape, Init init, DType dtype = DType::f32);
  // Adds or replaces a parameter with the given tensor (shape checks are the
  // caller's business; the checkpoint loader checks against the config).
  void set(const std::string& name, const Tensor& value);

  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Throws "parameter '<name>' not found" when missing.
  const Tensor& get(const std::string& name) const;
  Tensor& get(const std::string& name);
  Init init_of(const std::string& name) const;

  size_t size() const { return names_.size(); }
  const std::vector<std::string>& names() const { return names_; }
  // The tensors in insertion order (handles share storage with the store).
  std::vector<Tensor> tensors() const;
  int64_t numel() const;

  // Fills every parameter in insertion order from rng: normal(0, std) for
  // Init::normal, ones, zeros.
  void initialize(Rng& rng, double std = 0.02);
  // Marks every parameter as a trainable leaf (or not).
  void set_requires_grad(bool on);
  // Converts every floating parameter to `dtype` (new storage, no history; requires_grad
  // kept): e.g. bf16 weights for mixed-precision training. Handles taken before see the old
  // tensors.
  void convert(DType dtype);
  // A deep copy (fresh storage, no autograd history), e.g. frozen reference weights.
  ParamStore clone() const;

 private:
  struct Entry {
    Tensor tensor;
    Init init;
  };
  std::vector<std::string> names_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<Entry> entries_;
};

}  // namespace visplay
