#include <stdexcept>
#include <string>

#include "runtime/device.h"
#include "runtime/dtype.h"

namespace visplay {

std::string Device::str() const {
  switch (type) {
    case DeviceType::cpu: return "cpu";
    case DeviceType::sim: return "sim";
    case DeviceType::cuda: return "cuda:" + std::to_string(index);
  }
  return "?";
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return kCPU;
  if (s == "sim") return kSim;
  if (s == "cuda") return {DeviceType::cuda, 0};
  if (s.rfind("cuda:", 0) == 0) {
    try {
      return {DeviceType::cuda, std::stoi(s.substr(5))};
    } catch (...) {
    }
  }
  throw std::runtime_error("unknown device '" + s + "' (expected cpu, sim, cuda or cuda:N)");
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::f32, DType::bf16, DType::f64, DType::i32, DType::i64})
    if (name == dtype_name(t)) return t;
  throw std::runtime_error("unknown dtype '" + name + "' (expected f32, bf16, f64, i32 or i64)");
}

}  // namespace visplay
