#include <gtest/gtest.h>

#include "runtime/allocator.h"
#include "runtime/ops.h"
#include "tests/runtime/test_util.h"

using namespace visplay;

TEST(Tensor, CreationAndMetadata) {
  Tensor t = Tensor::full({2, 3}, 1.5);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_TRUE(t.is_contiguous());
  for (float v : t.to_vector<float>()) EXPECT_EQ(v, 1.5f);
  EXPECT_EQ(t.str(), "Tensor[2, 3] f32 cpu");
  EXPECT_THROW(Tensor::empty({2, -1}), std::invalid_argument);
}

TEST(Tensor, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even (1.0).
  EXPECT_EQ(static_cast<float>(bf16(1.0f + 0x1.0p-8f)), 1.0f);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd mantissa) and 1+2^-6: rounds up.
  EXPECT_EQ(static_cast<float>(bf16(1.0f + 3 * 0x1.0p-8f)), 1.0f + 0x1.0p-6f);
  // Just above halfway rounds up.
  EXPECT_EQ(static_cast<float>(bf16(1.0f + 0x1.0p-8f + 0x1.0p-20f)), 1.0f + 0x1.0p-7f);
  EXPECT_TRUE(std::isnan(static_cast<float>(bf16(NAN))));
  Tensor x = test::random_tensor({100}, 1, DType::f32);
  std::vector<float> back = x.to(DType::bf16).to_vector<float>();
  std::vector<float> orig = x.to_vector<float>();
  for (size_t i = 0; i < orig.size(); ++i) EXPECT_NEAR(back[i], orig[i], std::fabs(orig[i]) * 0x1.0p-8f);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector<double>({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor tr = t.transpose(0, 1);
  EXPECT_EQ(tr.shape(), (Shape{3, 2}));
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.contiguous().to_vector<double>(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  Tensor sl = t.slice(1, 1, 3);
  EXPECT_EQ(sl.to_vector<double>(), (std::vector<double>{1, 2, 4, 5}));
  Tensor r = t.reshape({3, -1});
  EXPECT_EQ(r.shape(), (Shape{3, 2}));
  EXPECT_EQ(r.storage(), t.storage());
  sl.fill_(9);  // writes through the view
  EXPECT_EQ(t.to_vector<double>(), (std::vector<double>{0, 9, 9, 3, 9, 9}));
  EXPECT_THROW(t.reshape({4, 2}), std::invalid_argument);
  EXPECT_THROW(t.slice(1, 2, 5), std::invalid_argument);
}

TEST(Tensor, ConversionsRoundTrip) {
  Tensor x = test::random_tensor({4, 5}, 2, DType::f64, -100, 100);
  std::vector<double> v = x.to_vector<double>();
  std::vector<double> via_f32 = x.to(DType::f32).to(DType::f64).to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(via_f32[i], v[i], 1e-5);
  Tensor ids = Tensor::from_vector<int64_t>({3, -2, 7}, {3});
  EXPECT_EQ(ids.to(DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{3, -2, 7}));
  Tensor sim = x.to(kSim);  // host memory on another device
  EXPECT_EQ(sim.device(), kSim);
  EXPECT_EQ(sim.to(kCPU).to_vector<double>(), v);
}

TEST(Tensor, ErrorsNameOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
  try {
    matmul(a, b);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("matmul"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[4, 5]"), std::string::npos) << m;
  }
  EXPECT_THROW(add(a, Tensor::zeros({2, 3}, DType::f64)), std::invalid_argument);
  EXPECT_THROW(add(a, Tensor::zeros({2, 3}, DType::f32, kSim)), std::invalid_argument);
}

TEST(Allocator, CachesAndCountsPeak) {
  CachingAllocator alloc({[](size_t n) { return std::malloc(n); }, [](void* p) { std::free(p); }});
  void* a = alloc.allocate(1000);
  void* b = alloc.allocate(5000);
  AllocatorStats s = alloc.stats();
  EXPECT_EQ(s.current_bytes, CachingAllocator::round_size(1000) + CachingAllocator::round_size(5000));
  EXPECT_EQ(s.num_system_allocs, 2u);
  alloc.deallocate(a, 1000);
  void* c = alloc.allocate(1000);  // reuses the cached block
  EXPECT_EQ(c, a);
  EXPECT_EQ(alloc.stats().num_system_allocs, 2u);
  alloc.deallocate(b, 5000);
  alloc.deallocate(c, 1000);
  s = alloc.stats();
  EXPECT_EQ(s.current_bytes, 0u);
  EXPECT_EQ(s.peak_bytes, CachingAllocator::round_size(1000) + CachingAllocator::round_size(5000));
  EXPECT_GT(s.cached_bytes, 0u);
  alloc.empty_cache();
  EXPECT_EQ(alloc.stats().cached_bytes, 0u);
  for (size_t n : {1ul, 513ul, 100000ul, 123456789ul}) {
    size_t r = CachingAllocator::round_size(n);
    EXPECT_GE(r, n);
    EXPECT_LE(r, std::max<size_t>(512, n + n / 8 + 512));
  }
}
