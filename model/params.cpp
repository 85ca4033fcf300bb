#include "model/params.h"

#include <stdexcept>

namespace visplay {

Tensor& ParamStore::add(const std::string& name, const Shape& shape, Init init, DType dtype) {
  if (contains(name)) throw std::runtime_error("parameter '" + name + "' added twice");
  index_[name] = entries_.size();
  names_.push_back(name);
  entries_.push_back({Tensor::empty(shape, dtype), init});
  return entries_.back().tensor;
}

void ParamStore::set(const std::string& name, const Tensor& value) {
  auto it = index_.find(name);
  if (it == index_.end()) {
    index_[name] = entries_.size();
    names_.push_back(name);
    entries_.push_back({value, Init::normal});
  } else {
    entries_[it->second].tensor = value;
  }
}

const Tensor& ParamStore::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::runtime_error("parameter '" + name + "' not found");
  return entries_[it->second].tensor;
}

Tensor& ParamStore::get(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::runtime_error("parameter '" + name + "' not found");
  return entries_[it->second].tensor;
}

Init ParamStore::init_of(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::runtime_error("parameter '" + name + "' not found");
  return entries_[it->second].init;
}

std::vector<Tensor> ParamStore::tensors() const {
  std::vector<Tensor> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) out.push_back(e.tensor);
  return out;
}

int64_t ParamStore::numel() const {
  int64_t n = 0;
  for (const Entry& e : entries_) n += e.tensor.numel();
  return n;
}

// One pass in insertion order over a single generator: the same seed gives
// the same weights whatever else changed in the program.
void ParamStore::initialize(Rng& rng, double std) {
  for (Entry& e : entries_) {
    Tensor& t = e.tensor;
    switch (e.init) {
      case Init::normal:
        t.copy_(randn(t.shape(), rng, std, DType::f32));
        break;
      case Init::ones:
        t.fill_(1.0);
        break;
      case Init::zeros:
        t.fill_(0.0);
        break;
    }
  }
}

void ParamStore::set_requires_grad(bool on) {
  for (Entry& e : entries_) e.tensor.set_requires_grad(on);
}

void ParamStore::convert(DType dtype) {
  NoGradGuard no_grad;
  for (Entry& e : entries_) {
    if (!is_floating(e.tensor.dtype()) || e.tensor.dtype() == dtype) continue;
    const bool trainable = e.tensor.requires_grad();
    e.tensor = e.tensor.to(dtype).contiguous().detach();
    if (trainable) e.tensor.set_requires_grad(true);
  }
}

ParamStore ParamStore::clone() const {
  ParamStore out;
  for (size_t i = 0; i < entries_.size(); ++i) {
    out.index_[names_[i]] = i;
    out.names_.push_back(names_[i]);
    out.entries_.push_back({entries_[i].tensor.detach().clone(), entries_[i].init});
  }
  return out;
}

}  // namespace visplay
