// Run under `mpiexec -np 2` by CTest: every rank runs every test; the process
// exit code of each rank reports its failures.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/cuda_device.h"
#include "runtime/dist/nccl_group.h"
#include "runtime/dist/process_group.h"
#include "runtime/ops.h"
#include "runtime/random.h"

using namespace visplay;
using namespace visplay::dist;

namespace {
// Each rank's contribution is a function of (rank, i), so every rank can
// compute the single-process result itself.
double value(int rank, int64_t i) { return std::sin(0.37 * i + rank) * (rank + 1); }

Tensor rank_tensor(int rank, int64_t n, DType t = DType::f64) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = value(rank, i);
  return Tensor::from_vector(v, {n}, t);
}
}  // namespace

TEST(Collectives, RunsUnderMpiWithTwoRanks) {
  auto pg = world_group();
  ASSERT_EQ(pg->backend(), "mpi");
  ASSERT_EQ(pg->size(), 2);
}

TEST(Collectives, AllReduceMatchesSingleProcessSum) {
  auto pg = world_group();
  const int64_t n = 1000;
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max, ReduceOp::min}) {
    Tensor t = rank_tensor(pg->rank(), n);
    pg->all_reduce(t, op);
    std::vector<double> got = t.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      double a = value(0, i), b = value(1, i);
      double want = op == ReduceOp::sum ? a + b : op == ReduceOp::avg ? (a + b) / 2
                  : op == ReduceOp::max ? std::max(a, b) : std::min(a, b);
      ASSERT_NEAR(got[i], want, 1e-12) << "op " << int(op) << " element " << i;
    }
  }
  Tensor f = rank_tensor(pg->rank(), n, DType::f32);
  pg->all_reduce(f);
  EXPECT_NEAR(f.to_vector<double>()[5], value(0, 5) + value(1, 5), 1e-5);
}

TEST(Collectives, BroadcastGatherScatter) {
  auto pg = world_group();
  Tensor b = rank_tensor(pg->rank(), 17);
  pg->broadcast(b, 1);
  EXPECT_EQ(b.to_vector<double>(), rank_tensor(1, 17).to_vector<double>());

  Tensor g = pg->all_gather(rank_tensor(pg->rank(), 5).reshape({1, 5}));
  EXPECT_EQ(g.shape(), (Shape{2, 1, 5}));
  std::vector<double> gv = g.to_vector<double>();
  for (int r = 0; r < 2; ++r)
    for (int i = 0; i < 5; ++i) EXPECT_EQ(gv[r * 5 + i], value(r, i));

  Tensor rs = pg->reduce_scatter(rank_tensor(pg->rank(), 8).reshape({4, 2}));
  EXPECT_EQ(rs.shape(), (Shape{2, 2}));
  std::vector<double> rv = rs.to_vector<double>();
  for (int i = 0; i < 4; ++i) {
    int64_t at = pg->rank() * 4 + i;
    EXPECT_NEAR(rv[i], value(0, at) + value(1, at), 1e-12);
  }
  EXPECT_THROW(pg->reduce_scatter(rank_tensor(pg->rank(), 3)), std::invalid_argument);
  pg->barrier();
}

TEST(Collectives, NcclAllReduceOnGpus) {
  auto pg = world_group();
  if (!nccl_available() || cuda_device_count() < pg->size()) GTEST_SKIP() << "needs one GPU per rank and NCCL";
  auto nccl = nccl_group(pg, pg->local_rank());
  const int64_t n = 4096;
  Tensor t = rank_tensor(pg->rank(), n, DType::f32).to(Device{DeviceType::cuda, pg->local_rank()});
  nccl->all_reduce(t);
  std::vector<double> got = t.to_vector<double>();
  for (int64_t i = 0; i < n; i += 97) EXPECT_NEAR(got[i], value(0, i) + value(1, i), 1e-5);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  world_group();  // MPI_Init before any test
  int rc = RUN_ALL_TESTS();
  // Any failing rank fails the job.
  int worst = rc;
  auto pg = world_group();
  Tensor t = Tensor::from_vector<int32_t>({rc}, {1});
  pg->all_reduce(t, ReduceOp::max);
  worst = t.to_vector<int32_t>()[0];
  return worst;
}
