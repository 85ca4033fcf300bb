// Parallelism above the ops: independent pieces of work (the slices of a batch
// being decoded) run at once, one per OpenMP thread, and every op a piece
// calls runs on that piece's thread alone.
//
// Why: an op splits its own loop over threads only when it is big enough, and
// each split pays a fork and a join. Decoding a small model opens ~60 small
// ops per token, each below or near that size, and on a VM every fork wakes a
// sleeping vCPU (60-100 us): two threads then decode no faster than one. One
// region per generation, with each thread decoding its own rows, pays that
// cost once.
#pragma once
#include <cstdint>
#include <functional>

namespace visplay {

// The OpenMP threads a parallel region would use here (omp_get_max_threads).
int64_t cpu_threads();

// Runs task(i) for every i in [0, n), on min(n, cpu_threads()) threads; inside
// a task, ops run single-threaded (the task thread's OpenMP thread count is
// set to 1; the caller's is unchanged afterwards). Tasks must not share
// mutable state. A task on another thread than the caller's does not see the
// caller's thread-local state (a NoGradGuard, say): set it inside the task.
// Every task runs even if another throws; then the exception of the
// lowest-numbered failed task is rethrown. A single task is a plain call on
// the caller's thread: its ops keep the caller's threads.
void run_tasks_in_parallel(int64_t n, const std::function<void(int64_t task)>& task);

}  // namespace visplay
