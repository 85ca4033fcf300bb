#include "runtime/parallel.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <vector>

namespace visplay {

int64_t cpu_threads() { return omp_get_max_threads(); }

void run_tasks_in_parallel(int64_t n, const std::function<void(int64_t task)>& task) {
  if (n <= 0) return;
  if (n == 1) return task(0);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  const int threads = static_cast<int>(std::min<int64_t>(n, cpu_threads()));
#pragma omp parallel num_threads(threads)
  {
    // nthreads-var is per task: this limits the regions the ops open inside
    // this thread's tasks (a team of one, no wake-up), not the caller's.
    omp_set_num_threads(1);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      try {
        task(i);
      } catch (...) {
        errors[static_cast<size_t>(i)] = std::current_exception();
      }
    }
  }
  for (std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace visplay
