// Where a tensor's storage lives. cpu and sim both use host memory: sim runs
// the CUDA kernel sources through the SIMT host emulator (kernels/simt/).
#pragma once
#include <cstdint>
#include <string>

namespace visplay {

enum class DeviceType : uint8_t { cpu, cuda, sim };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  bool operator==(const Device&) const = default;
  bool is_host() const { return type != DeviceType::cuda; }
  std::string str() const;
  static Device parse(const std::string& s);  // "cpu", "sim", "cuda", "cuda:1"
};

inline constexpr Device kCPU{DeviceType::cpu, 0};
inline constexpr Device kSim{DeviceType::sim, 0};

}  // namespace visplay
