// The SIMT host emulator's scheduler: one ucontext fiber per CUDA thread, the fibers of
// a block on one OS thread, blocks on OpenMP threads. Every rule about barriers and
// warp collectives is checked here, in the scheduler's context, never inside a fiber,
// so a violation becomes an ordinary C++ exception thrown by the launch.
#include "kernels/simt/simt.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <random>
#include <sstream>
#include <vector>

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace simt {
namespace {

std::atomic<uint64_t> g_seed{1};
std::atomic<bool> g_parallel{true};

constexpr size_t kStackBytes = 128 * 1024;
constexpr int kMaxWords = 10;  // the largest deposit: an mma's A, B and C fragments
constexpr int kMaxThreads = 1024;
constexpr size_t kMaxDynamicShared = 227 * 1024;  // H100/H200 opt-in maximum
constexpr uint32_t kPoison = 0x7fff7fffu;         // NaN as f32 and as both bf16 halves

enum class State { kRunnable, kAtBarrier, kAtWarp, kDone };

const char* op_name(detail::WarpOp op) {
  switch (op) {
    case detail::WarpOp::kSync:
      return "__syncwarp";
    case detail::WarpOp::kShuffle:
      return "a __shfl_*_sync";
    case detail::WarpOp::kVote:
      return "a vote (__ballot/__any/__all_sync)";
    case detail::WarpOp::kMma:
      return "mma_m16n8k16_bf16";
  }
  return "?";
}

struct Fiber {
  ucontext_t context;
  uint3 thread_index;
  State state = State::kRunnable;
  // The pending warp collective (valid while state == kAtWarp) and its result.
  detail::WarpOp op = detail::WarpOp::kSync;
  uint32_t mask = 0;
  uint32_t words[kMaxWords];
  uint32_t result[4];
};

struct Warp {
  uint32_t existing = 0;  // lanes that are threads of the block
  uint32_t arrived = 0;   // lanes parked at the pending collective
  uint32_t mask = 0;      // its mask, restricted to existing lanes
  detail::WarpOp op = detail::WarpOp::kSync;
  uint32_t words[32][kMaxWords];
};

// Fiber stacks of one OS thread: one mapping, a PROT_NONE guard page below each stack
// so an overflow faults instead of corrupting the neighbour.
struct StackPool {
  char* base = nullptr;
  size_t count = 0;
  size_t stride = 0;
  ~StackPool() {
    if (base) munmap(base, count * stride);
  }
  char* stack(size_t i) { return base + i * stride + page(); }
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  void reserve(size_t n) {
    if (n <= count) return;
    if (base) munmap(base, count * stride);
    stride = kStackBytes + page();
    void* p = mmap(nullptr, n * stride, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("simt: cannot map fiber stacks");
    base = static_cast<char*>(p);
    count = n;
    for (size_t i = 0; i < n; ++i) mprotect(base + i * stride, page(), PROT_NONE);
  }
};

struct BlockRun {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  ucontext_t scheduler;
  int current = -1;
  std::vector<int> ready;  // popped from the back
  std::mt19937_64 rng;
  std::vector<uint32_t> dynamic_smem;
  void (*body)(const void*) = nullptr;
  const void* ctx = nullptr;
  const char* name = "";
};

thread_local BlockRun* t_block = nullptr;
thread_local StackPool t_stacks;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string describe(const BlockRun& b, const std::string& what) {
  std::ostringstream s;
  s << "simt: kernel " << b.name << ", block (" << blockIdx.x << "," << blockIdx.y << ","
    << blockIdx.z << "): " << what;
  return s.str();
}

std::string thread_name(const Fiber& f) {
  std::ostringstream s;
  s << "(" << f.thread_index.x << "," << f.thread_index.y << "," << f.thread_index.z << ")";
  return s.str();
}

void fiber_entry() {
  BlockRun* b = t_block;
  b->body(b->ctx);
  b->fibers[b->current].state = State::kDone;
  // Returning resumes uc_link, the scheduler.
}

// Pushes `lanes` (fiber indices) onto the ready stack in a seeded shuffled order.
void release(BlockRun& b, std::vector<int>& lanes) {
  std::shuffle(lanes.begin(), lanes.end(), b.rng);
  for (int i : lanes) {
    b.fibers[i].state = State::kRunnable;
    b.ready.push_back(i);
  }
}

float bf16_bits_to_float(uint32_t bits16) { return __uint_as_float((bits16 & 0xffffu) << 16); }

// The collective is complete: compute every lane's result from the deposits.
void combine(BlockRun& b, Warp& w, int warp_index) {
  Fiber* lanes = &b.fibers[warp_index * 32];
  switch (w.op) {
    case detail::WarpOp::kSync:
      break;
    case detail::WarpOp::kShuffle:
      for (int l = 0; l < 32; ++l) {
        if (!(w.mask >> l & 1)) continue;
        uint32_t src = w.words[l][2];
        bool readable = src < 32 && (w.mask >> src & 1);
        lanes[l].result[0] = readable ? w.words[src][0] : kPoison;
        lanes[l].result[1] = readable ? w.words[src][1] : kPoison;
      }
      break;
    case detail::WarpOp::kVote: {
      uint32_t ballot = 0;
      for (int l = 0; l < 32; ++l)
        if ((w.mask >> l & 1) && w.words[l][0]) ballot |= 1u << l;
      for (int l = 0; l < 32; ++l)
        if (w.mask >> l & 1) {
          lanes[l].result[0] = ballot;
          lanes[l].result[1] = w.mask;  // the lanes that voted, for __all_sync
        }
      break;
    }
    case detail::WarpOp::kMma: {
      // Rebuild the tiles from the PTX ISA fragment layout of mma.m16n8k16 (.bf16):
      // group = lane / 4, tig = lane % 4; the low half of a register is the lower index.
      float A[16][16], B[16][8], C[16][8];
      for (int l = 0; l < 32; ++l) {
        int g = l / 4, t = l % 4;
        const uint32_t* wd = w.words[l];
        for (int r = 0; r < 4; ++r) {  // a: {g, g+8, g, g+8} x {2t, 2t, 2t+8, 2t+8}
          int row = g + (r & 1) * 8, col = 2 * t + (r >> 1) * 8;
          A[row][col] = bf16_bits_to_float(wd[r]);
          A[row][col + 1] = bf16_bits_to_float(wd[r] >> 16);
        }
        for (int r = 0; r < 2; ++r) {  // b: k rows {2t, 2t+1} (+8 for reg 1), column g
          B[2 * t + r * 8][g] = bf16_bits_to_float(wd[4 + r]);
          B[2 * t + r * 8 + 1][g] = bf16_bits_to_float(wd[4 + r] >> 16);
        }
        for (int i = 0; i < 4; ++i)  // c: rows {g, g, g+8, g+8}, columns {2t, 2t+1}
          C[g + (i >> 1) * 8][2 * t + (i & 1)] = __uint_as_float(wd[6 + i]);
      }
      for (int l = 0; l < 32; ++l) {
        int g = l / 4, t = l % 4;
        for (int i = 0; i < 4; ++i) {
          int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
          float acc = C[row][col];
          for (int k = 0; k < 16; ++k) acc = std::fma(A[row][k], B[k][col], acc);
          lanes[l].result[i] = __float_as_uint(acc);
        }
      }
      break;
    }
  }
}

// Fiber `i` has parked at a warp collective: check it agrees with the lanes already
// there, and complete the collective when every lane of the mask has arrived.
void arrive_at_warp(BlockRun& b, int i) {
  Fiber& f = b.fibers[i];
  int lane = i % 32, warp_index = i / 32;
  Warp& w = b.warps[warp_index];
  uint32_t mask = f.mask & w.existing;
  if (!(mask >> lane & 1))
    throw std::runtime_error(describe(b, "thread " + thread_name(f) + " called " + op_name(f.op) +
                                             " with a mask that does not include its own lane"));
  if (f.op == detail::WarpOp::kMma && w.existing != 0xffffffffu)
    throw std::runtime_error(describe(b, "mma_m16n8k16_bf16 needs a full warp of 32 threads"));
  if (w.arrived == 0) {
    w.op = f.op;
    w.mask = mask;
  } else if (w.op != f.op || w.mask != mask) {
    std::ostringstream s;
    s << "divergent warp collective in warp " << warp_index << ": thread " << thread_name(f)
      << " called " << op_name(f.op) << " (mask 0x" << std::hex << mask << ") while lanes 0x"
      << w.arrived << " wait at " << op_name(w.op) << " (mask 0x" << w.mask
      << "); the emulator supports one pending collective per warp";
    throw std::runtime_error(describe(b, s.str()));
  }
  std::memcpy(w.words[lane], f.words, sizeof(f.words));
  w.arrived |= 1u << lane;
  if (w.arrived == w.mask) {
    combine(b, w, warp_index);
    std::vector<int> lanes;
    for (int l = 0; l < 32; ++l)
      if (w.mask >> l & 1) lanes.push_back(warp_index * 32 + l);
    w.arrived = 0;
    release(b, lanes);
  }
}

// Everybody is parked and nobody can run: name who waits where.
std::string deadlock_report(const BlockRun& b, int done, int at_barrier) {
  std::ostringstream s;
  s << "deadlock: " << at_barrier << " threads wait at __syncthreads(), " << done << " have exited";
  for (size_t wi = 0; wi < b.warps.size(); ++wi) {
    const Warp& w = b.warps[wi];
    if (w.arrived)
      s << "; warp " << wi << ": lanes 0x" << std::hex << w.arrived << " wait at " << op_name(w.op)
        << " for lanes 0x" << (w.mask & ~w.arrived) << std::dec;
  }
  return s.str();
}

void run_block(BlockRun& b, uint3 block_index, dim3 grid, dim3 block, uint64_t block_seed) {
  int n = static_cast<int>(block.x * block.y * block.z);
  blockIdx = block_index;
  blockDim = block;
  gridDim = grid;
  b.rng.seed(block_seed);
  std::fill(b.dynamic_smem.begin(), b.dynamic_smem.end(), kPoison);
  t_stacks.reserve(static_cast<size_t>(n));
  b.fibers.resize(n);
  b.warps.assign((n + 31) / 32, Warp{});
  for (int i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.state = State::kRunnable;
    f.thread_index = {static_cast<unsigned>(i) % block.x,
                      static_cast<unsigned>(i) / block.x % block.y,
                      static_cast<unsigned>(i) / (block.x * block.y)};
    b.warps[i / 32].existing |= 1u << (i % 32);
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = t_stacks.stack(i);
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &b.scheduler;
    makecontext(&f.context, fiber_entry, 0);
  }
  b.ready.clear();
  std::vector<int> all(n);
  for (int i = 0; i < n; ++i) all[i] = i;
  release(b, all);

  int done = 0, at_barrier = 0;
  while (true) {
    while (!b.ready.empty()) {
      int i = b.ready.back();
      b.ready.pop_back();
      Fiber& f = b.fibers[i];
      b.current = i;
      threadIdx = f.thread_index;
      swapcontext(&b.scheduler, &f.context);
      if (f.state == State::kDone)
        ++done;
      else if (f.state == State::kAtBarrier)
        ++at_barrier;
      else if (f.state == State::kAtWarp)
        arrive_at_warp(b, i);
    }
    if (done == n) break;
    if (done + at_barrier == n && done > 0) {
      for (const Fiber& f : b.fibers)
        if (f.state == State::kAtBarrier)
          throw std::runtime_error(describe(
              b, "divergent __syncthreads(): thread " + thread_name(f) + " and " +
                     std::to_string(at_barrier - 1) + " others wait at a barrier that " +
                     std::to_string(done) + " threads of the block exited without reaching"));
    }
    if (at_barrier != n - done)
      throw std::runtime_error(describe(b, deadlock_report(b, done, at_barrier)));
    std::vector<int> waiting;
    for (int i = 0; i < n; ++i)
      if (b.fibers[i].state == State::kAtBarrier) waiting.push_back(i);
    at_barrier = 0;
    release(b, waiting);
  }
}

BlockRun& current_block() {
  if (!t_block || t_block->current < 0)
    throw std::runtime_error("simt: a device builtin was called outside a kernel launch");
  return *t_block;
}

// Parks the running fiber and switches to the scheduler.
void park(BlockRun& b, State state) {
  Fiber& f = b.fibers[b.current];
  f.state = state;
  swapcontext(&f.context, &b.scheduler);
}

}  // namespace

void set_seed(uint64_t seed) { g_seed = seed; }
uint64_t seed() { return g_seed; }
void set_parallel(bool parallel) { g_parallel = parallel; }

namespace detail {

void sync_block() { park(current_block(), State::kAtBarrier); }

const uint32_t* warp_collective(WarpOp op, uint32_t mask, const uint32_t* words, int num_words) {
  BlockRun& b = current_block();
  Fiber& f = b.fibers[b.current];
  f.op = op;
  f.mask = mask;
  std::memset(f.words, 0, sizeof(f.words));
  if (num_words > 0) std::memcpy(f.words, words, sizeof(uint32_t) * static_cast<size_t>(num_words));
  park(b, State::kAtWarp);
  return b.fibers[b.current].result;
}

unsigned char* dynamic_shared() {
  return reinterpret_cast<unsigned char*>(current_block().dynamic_smem.data());
}

int lane_id() { return current_block().current % 32; }

void run_grid(dim3 grid, dim3 block, size_t dynamic_smem, void (*body)(const void*),
              const void* ctx, const char* name) {
  uint64_t threads = uint64_t{block.x} * block.y * block.z;
  uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  if (threads == 0 || threads > kMaxThreads || block.z > 64)
    throw std::runtime_error(std::string("simt: kernel ") + name + ": invalid block size " +
                             std::to_string(block.x) + "x" + std::to_string(block.y) + "x" +
                             std::to_string(block.z));
  if (grid.y > 65535 || grid.z > 65535)
    throw std::runtime_error(std::string("simt: kernel ") + name + ": grid.y/z above 65535");
  if (dynamic_smem > kMaxDynamicShared)
    throw std::runtime_error(std::string("simt: kernel ") + name + ": " +
                             std::to_string(dynamic_smem) + " bytes of dynamic shared memory");
  if (blocks == 0) return;
  if (t_block) throw std::runtime_error("simt: a kernel launched another kernel");

  // The seed fixes the block order and, per block, every release order.
  uint64_t seed = g_seed;
  std::vector<uint64_t> order(blocks);
  for (uint64_t i = 0; i < blocks; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(splitmix64(seed)));

  std::mutex error_mutex;
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  bool parallel = g_parallel && blocks > 1;
#pragma omp parallel if (parallel)
  {
    BlockRun run;
    run.body = body;
    run.ctx = ctx;
    run.name = name;
    run.dynamic_smem.resize((dynamic_smem + 3) / 4);
    t_block = &run;
#pragma omp for schedule(dynamic, 1)
    for (uint64_t k = 0; k < blocks; ++k) {
      if (failed) continue;
      uint64_t linear = order[k];
      uint3 block_index = {static_cast<unsigned>(linear % grid.x),
                           static_cast<unsigned>(linear / grid.x % grid.y),
                           static_cast<unsigned>(linear / (uint64_t{grid.x} * grid.y))};
      try {
        run_block(run, block_index, grid, block, splitmix64(seed ^ splitmix64(linear + 1)));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed = true;
      }
      run.current = -1;
    }
    t_block = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace detail
}  // namespace simt
