// run_tasks_in_parallel: every task runs once, on its own thread when there
// are enough, with the ops inside single-threaded; the caller's thread count
// is unchanged afterwards; a task's exception reaches the caller after all
// tasks ran.
#include "runtime/parallel.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace visplay {
namespace {

TEST(Parallel, EveryTaskRunsOnceWithSingleThreadedOpsInside) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(2);
  const int64_t n = 5;
  std::vector<int> runs(n, 0), inner_threads(n, -1), inner_team(n, -1), thread_of(n, -1);
  std::vector<int> grad_on(n, -1);
  NoGradGuard caller_no_grad;  // the caller's thread-local state, not the workers'
  run_tasks_in_parallel(n, [&](int64_t i) {
    runs[i]++;
    thread_of[i] = omp_get_thread_num();
    inner_threads[i] = omp_get_max_threads();
    grad_on[i] = grad_enabled();
    // What an op's own parallel region gets inside a task.
#pragma omp parallel
    {
#pragma omp single
      inner_team[i] = omp_get_num_threads();
    }
  });
  EXPECT_EQ(omp_get_max_threads(), 2) << "the caller's thread count changed";
  std::set<int> threads_used;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(runs[i], 1) << "task " << i;
    EXPECT_EQ(inner_threads[i], 1) << "task " << i;
    EXPECT_EQ(inner_team[i], 1) << "task " << i;
    // Thread 0 is the caller's thread; the others start from the default.
    EXPECT_EQ(grad_on[i], thread_of[i] == 0 ? 0 : 1)
        << "task " << i << " on thread " << thread_of[i];
    threads_used.insert(thread_of[i]);
  }
  EXPECT_EQ(threads_used.size(), 2u) << "5 tasks on 2 threads";
  omp_set_num_threads(before);
}

TEST(Parallel, FirstFailedTaskRethrownAfterAllRan) {
  std::atomic<int> ran{0};
  try {
    run_tasks_in_parallel(6, [&](int64_t i) {
      ran++;
      if (i == 4 || i == 1) throw std::runtime_error("task " + std::to_string(i) + " failed");
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "task 1 failed");
  }
  EXPECT_EQ(ran.load(), 6);
  int calls = 0;
  run_tasks_in_parallel(0, [&](int64_t) { calls++; });
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace visplay
