// test-backend-ops on a real GPU: the same cases as the sim suite, cuda vs
// cpu. Skips cleanly on machines without a GPU (CI, the development VMs).
#include <gtest/gtest.h>

#include "runtime/cuda_device.h"
#include "tests/runtime/backend_cases.h"

using namespace visplay;
using namespace visplay::test;

namespace {

const Device kCuda{DeviceType::cuda, 0};

class BackendOpsCuda : public ::testing::TestWithParam<int> {};

TEST_P(BackendOpsCuda, MatchesCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU on this machine";
  run_case(cases()[GetParam()], kCuda);
}

INSTANTIATE_TEST_SUITE_P(Ops, BackendOpsCuda, ::testing::Range(0, static_cast<int>(cases().size())),
                         [](const ::testing::TestParamInfo<int>& info) { return cases()[info.param].name; });

}  // namespace
