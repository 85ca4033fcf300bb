#include <omp.h>
#include <chrono>
#include <cstdio>
#include <vector>
int main() {
  std::vector<float> buf(1 << 16, 1.0f);
  for (long work : {0L, 2000L, 20000L, 100000L}) {
    // serial reference of the same work (both halves, one thread)
    auto body = [&](int part) { float s = 0; for (long i = 0; i < work; ++i) s += buf[(i + part) & 0xffff] * 1.0001f; buf[part] = s * 1e-30f + 1.0f; };
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < 2000; ++r) { body(0); body(1); }
    auto t1 = std::chrono::steady_clock::now();
    for (int r = 0; r < 2000; ++r) {
#pragma omp parallel num_threads(2)
      body(omp_get_thread_num());
    }
    auto t2 = std::chrono::steady_clock::now();
    double ser = std::chrono::duration<double, std::micro>(t1 - t0).count() / 2000;
    double par = std::chrono::duration<double, std::micro>(t2 - t1).count() / 2000;
    printf("work per half %6ld: serial %8.1f us  parallel %8.1f us  overhead vs ideal %6.1f us\n", work, ser, par, par - ser / 2);
  }
}
