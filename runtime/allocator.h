// A caching allocator per device. Freed blocks are kept in size buckets and
// reused, so steady-state training loops never call the system allocator, and
// the statistics give benchmarks their current and peak bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "runtime/device.h"

namespace visplay {

struct AllocatorStats {
  size_t current_bytes = 0;  // bytes handed out and not yet freed
  size_t peak_bytes = 0;     // high-water mark of current_bytes
  size_t cached_bytes = 0;   // bytes held in the free cache
  size_t num_allocs = 0;     // allocate() calls
  size_t num_system_allocs = 0;  // calls that reached the system allocator
};

// How a device gets raw memory. The cuda backend registers its own at start-up.
struct DeviceMemory {
  void* (*alloc)(size_t bytes) = nullptr;
  void (*free)(void* p) = nullptr;
  // Copies for devices whose memory the host cannot read (null for host memory).
  void (*copy_to_host)(void* dst, const void* src, size_t bytes) = nullptr;
  void (*copy_from_host)(void* dst, const void* src, size_t bytes) = nullptr;
  void (*copy_on_device)(void* dst, const void* src, size_t bytes) = nullptr;
};

// The memory functions of a device type (for copies across devices).
DeviceMemory device_memory(DeviceType t);

class CachingAllocator {
 public:
  explicit CachingAllocator(DeviceMemory mem) : mem_(mem) {}
  ~CachingAllocator();
  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes);
  AllocatorStats stats() const;
  void reset_peak();
  void empty_cache();  // return every cached block to the system

  static size_t round_size(size_t bytes);

 private:
  DeviceMemory mem_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_blocks_;  // rounded size -> block
  AllocatorStats stats_;
};

// When on, every host allocation is filled with 0xFF bytes (NaN for floats,
// -1 for integers) before it is handed out, so a kernel that leaves part of
// its output unwritten fails its test. Tests turn it on; it costs a memset.
void set_poison_allocations(bool on);
bool poison_allocations();

// The allocator of a device (created on first use).
CachingAllocator& allocator_for(Device d);
void register_device_memory(DeviceType t, DeviceMemory mem);

}  // namespace visplay
