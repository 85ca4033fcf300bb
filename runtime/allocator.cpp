#include "runtime/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace visplay {

namespace {
void* host_alloc(size_t bytes) {
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return p;
}
void host_free(void* p) { std::free(p); }
}  // namespace

static std::atomic<bool> g_poison{false};
void set_poison_allocations(bool on) { g_poison = on; }
bool poison_allocations() { return g_poison; }

CachingAllocator::~CachingAllocator() { empty_cache(); }

// Small sizes round to 512 bytes, larger ones to 1/16 of the next power of
// two (which is less than 1/8 of the request): reuse stays likely while at
// most 12.5% is wasted.
size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes <= 512) return 512;
  size_t p = 1;
  while (p < bytes) p <<= 1;
  size_t step = p >= 8192 ? p / 16 : 512;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(size_t bytes) {
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.num_allocs++;
  void* p = nullptr;
  auto it = free_blocks_.find(size);
  if (it != free_blocks_.end()) {
    p = it->second;
    free_blocks_.erase(it);
    stats_.cached_bytes -= size;
  } else {
    p = mem_.alloc(size);
    stats_.num_system_allocs++;
  }
  stats_.current_bytes += size;
  if (stats_.current_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.current_bytes;
  if (g_poison) {
    if (!mem_.copy_from_host) {
      std::memset(p, 0xFF, size);
    } else {
      std::vector<unsigned char> ones(size, 0xFF);
      mem_.copy_from_host(p, ones.data(), size);
    }
  }
  return p;
}

void CachingAllocator::deallocate(void* p, size_t bytes) {
  if (!p) return;
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.current_bytes -= size;
  stats_.cached_bytes += size;
  free_blocks_.emplace(size, p);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_bytes = stats_.current_bytes;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [size, p] : free_blocks_) mem_.free(p);
  free_blocks_.clear();
  stats_.cached_bytes = 0;
}

namespace {
struct Registry {
  std::mutex mu;
  DeviceMemory memory[3] = {{host_alloc, host_free}, {}, {host_alloc, host_free}};
  std::map<std::pair<int, int>, std::unique_ptr<CachingAllocator>> allocators;
};
Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: tensors may outlive static teardown
  return *r;
}
}  // namespace

void register_device_memory(DeviceType t, DeviceMemory mem) {
  std::lock_guard<std::mutex> lock(registry().mu);
  registry().memory[static_cast<int>(t)] = mem;
}

DeviceMemory device_memory(DeviceType t) {
  std::lock_guard<std::mutex> lock(registry().mu);
  return registry().memory[static_cast<int>(t)];
}

CachingAllocator& allocator_for(Device d) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto key = std::make_pair(static_cast<int>(d.type), d.index);
  auto it = r.allocators.find(key);
  if (it != r.allocators.end()) return *it->second;
  DeviceMemory mem = r.memory[static_cast<int>(d.type)];
  if (!mem.alloc)
    throw std::runtime_error("device " + d.str() +
                             " has no memory backend (is the CUDA backend built and a GPU present?)");
  auto a = std::make_unique<CachingAllocator>(mem);
  CachingAllocator& ref = *a;
  r.allocators.emplace(key, std::move(a));
  return ref;
}

}  // namespace visplay
