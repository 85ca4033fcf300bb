// Elementwise ops with broadcasting, and reductions.
#include <cmath>
#include <functional>

#include "kernels/cpu/parallel.h"
#include "runtime/ops_common.h"
#include "visplay/kernels/elementwise.h"

namespace visplay {
using namespace detail;

namespace {

Shape broadcast_shape(const char* op, const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      op_error(op, "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = std::max(da, db);
  }
  return out;
}

// Strides of t viewed at out_shape (0 along broadcast dims).
std::vector<int64_t> broadcast_strides(const Tensor& t, const Shape& out_shape) {
  size_t n = out_shape.size(), k = t.shape().size();
  std::vector<int64_t> st(n, 0);
  for (size_t i = 0; i < k; ++i) {
    size_t o = n - k + i;
    st[o] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  }
  return st;
}

enum class BinOp { add, sub, mul };

template <class T>
inline T apply(BinOp op, T x, T y) {
  switch (op) {
    case BinOp::add: return x + y;
    case BinOp::sub: return x - y;
    case BinOp::mul: return x * y;
  }
  return T(0);
}

// out = a (op) b over the broadcast shape.
template <class T>
void binary_kernel(BinOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  T* po = out.data<T>();
  int64_t n = out.numel();
  // Fast paths: same-shape contiguous, and a contiguous suffix-shaped b (bias).
  // The op is chosen outside the loops so they vectorise.
  if (a.is_contiguous() && b.is_contiguous() && a.shape() == out.shape()) {
    int64_t nb = b.numel();
    const Shape& sb = b.shape();
    bool suffix = sb.size() <= out.shape().size() &&
                  std::equal(sb.begin(), sb.end(), out.shape().end() - sb.size());
    if (nb == n || (suffix && nb > 0)) {
      auto run = [&](auto f) {
        if (nb == n) {
#pragma omp parallel for schedule(static) if (n > kernels::cpu::kParallelMinElements)
          for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
          return;
        }
        int64_t rows = n / nb;
#pragma omp parallel for schedule(static) if (n > kernels::cpu::kParallelMinElements)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < nb; ++j) po[r * nb + j] = f(pa[r * nb + j], pb[j]);
      };
      switch (op) {
        case BinOp::add:
          run([](T x, T y) { return x + y; });
          return;
        case BinOp::sub:
          run([](T x, T y) { return x - y; });
          return;
        case BinOp::mul:
          run([](T x, T y) { return x * y; });
          return;
      }
    }
  }
  const Shape& shape = out.shape();
  int64_t nd = static_cast<int64_t>(shape.size());
  auto sa = broadcast_strides(a, shape), sb = broadcast_strides(b, shape);
  int64_t inner = nd ? shape[nd - 1] : 1;
  int64_t rows = inner ? n / inner : 0;
  int64_t ia = nd ? sa[nd - 1] : 0, ib = nd ? sb[nd - 1] : 0;
#pragma omp parallel for schedule(static) if (n > kernels::cpu::kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t oa = 0, ob = 0, rem = r;
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t idx = rem % shape[d];
      rem /= shape[d];
      oa += idx * sa[d];
      ob += idx * sb[d];
    }
    for (int64_t j = 0; j < inner; ++j) po[r * inner + j] = apply(op, pa[oa + j * ia], pb[ob + j * ib]);
  }
}

Tensor binary(const char* name, BinOp op, const Tensor& a, const Tensor& b) {
  check_same_device(name, a, b);
  check_floating(name, a);
  check_floating(name, b);
  if (any_bf16({&a, &b})) return binary(name, op, f32(a), f32(b)).to(DType::bf16);
  check_same_dtype(name, a, b);
  Shape shape = broadcast_shape(name, a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (on_device(a)) {
    require_device_f32(name, a);
    if (shape.size() > static_cast<size_t>(kernels::kMaxDims))
      op_error(name, "device kernels take at most 6 dims, got " + shape_str(shape));
    kernels::StridedShape ss;
    ss.ndim = static_cast<int>(shape.size());
    auto sa = broadcast_strides(a, shape), sb = broadcast_strides(b, shape);
    for (int d = 0; d < ss.ndim; ++d) ss.size[d] = shape[d], ss.stride_a[d] = sa[d], ss.stride_b[d] = sb[d];
    auto code = op == BinOp::add ? kernels::BinaryOp::add : op == BinOp::sub ? kernels::BinaryOp::sub
                                                                              : kernels::BinaryOp::mul;
    VISPLAY_DEVICE_KERNEL(a.device(), binary, code, static_cast<const float*>(a.raw_data()),
                          static_cast<const float*>(b.raw_data()), out.data<float>(), ss, nullptr);
  } else {
    dispatch_float(name, a.dtype(), [&](auto t) { binary_kernel<decltype(t)>(op, a, b, out); });
  }
  Shape sa = a.shape(), sb = b.shape();
  return record_op(out, name, {a, b}, [op, a, b, sa, sb](const Tensor& g) {
    Tensor ga, gb;
    switch (op) {
      case BinOp::add:
        if (a.requires_grad()) ga = sum_to_shape(g, sa);
        if (b.requires_grad()) gb = sum_to_shape(g, sb);
        break;
      case BinOp::sub:
        if (a.requires_grad()) ga = sum_to_shape(g, sa);
        if (b.requires_grad()) gb = sum_to_shape(neg(g), sb);
        break;
      case BinOp::mul:
        if (a.requires_grad()) ga = sum_to_shape(mul(g, b.detach()), sa);
        if (b.requires_grad()) gb = sum_to_shape(mul(g, a.detach()), sb);
        break;
    }
    return std::vector<Tensor>{ga, gb};
  });
}

}  // namespace

// The same op on a sim/cuda device: kernels from visplay/kernels/elementwise.h.
Tensor detail::device_unary(const char* name, kernels::UnaryOp code, float p, const Tensor& a) {
  require_device_f32(name, a);
  Tensor x = a.contiguous();
  Tensor out = Tensor::empty(x.shape(), DType::f32, x.device());
  VISPLAY_DEVICE_KERNEL(x.device(), unary_forward, code, x.data<float>(), out.data<float>(), x.numel(), p,
                        nullptr);
  Tensor xs = x.detach(), ys = out.detach();
  return record_op(out, name, {x}, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xs.shape(), DType::f32, xs.device());
    VISPLAY_DEVICE_KERNEL(xs.device(), unary_backward, code, gc.data<float>(), xs.data<float>(),
                          ys.data<float>(), dx.data<float>(), xs.numel(), p, nullptr);
    return std::vector<Tensor>{dx};
  });
}

namespace {

// y = f(x) elementwise with dy/dx = df(x, y); `code` and `p` name the same
// function for the device kernel.
template <class F, class DF>
Tensor unary(const char* name, const Tensor& a, F f, DF df, kernels::UnaryOp code, float p = 0.0f) {
  check_floating(name, a);
  if (a.dtype() == DType::bf16) return unary(name, f32(a), f, df, code, p).to(DType::bf16);
  if (on_device(a)) return device_unary(name, code, p, a);
  Tensor x = a.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  int64_t n = x.numel();
  dispatch_float(name, x.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* px = x.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for schedule(static) if (n > kernels::cpu::kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) po[i] = static_cast<T>(f(static_cast<double>(px[i])));
  });
  Tensor xs = x.detach(), ys = out.detach();
  return record_op(out, name, {x}, [xs, ys, df, name](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
    int64_t n = xs.numel();
    dispatch_float(name, xs.dtype(), [&](auto t) {
      using T = decltype(t);
      const T *px = xs.data<T>(), *py = ys.data<T>(), *pg = gc.data<T>();
      T* pd = dx.data<T>();
#pragma omp parallel for schedule(static) if (n > kernels::cpu::kParallelMinElements)
      for (int64_t i = 0; i < n; ++i) pd[i] = static_cast<T>(pg[i] * df(double(px[i]), double(py[i])));
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary("add", BinOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary("sub", BinOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary("mul", BinOp::mul, a, b); }

using kernels::UnaryOp;

Tensor scale(const Tensor& a, double s) {
  return unary("scale", a, [s](double x) { return x * s; }, [s](double, double) { return s; },
               UnaryOp::scale, static_cast<float>(s));
}
Tensor add_scalar(const Tensor& a, double s) {
  return unary("add_scalar", a, [s](double x) { return x + s; }, [](double, double) { return 1.0; },
               UnaryOp::add_scalar, static_cast<float>(s));
}
Tensor neg(const Tensor& a) {
  return unary("neg", a, [](double x) { return -x; }, [](double, double) { return -1.0; }, UnaryOp::scale,
               -1.0f);
}
Tensor exp(const Tensor& a) {
  return unary("exp", a, [](double x) { return std::exp(x); }, [](double, double y) { return y; },
               UnaryOp::exp);
}
Tensor log(const Tensor& a) {
  return unary("log", a, [](double x) { return std::log(x); }, [](double x, double) { return 1.0 / x; },
               UnaryOp::log);
}

// ---------------------------------------------------------------------------
// reductions

// Fixed-size chunks with double partials combined in order: the same bits for
// any thread count.
Tensor sum(const Tensor& a) {
  check_floating("sum", a);
  if (a.dtype() == DType::bf16) return sum(f32(a)).to(DType::bf16);
  Tensor x = a.contiguous();
  Tensor out = Tensor::empty({}, x.dtype(), x.device());
  int64_t n = x.numel();
  Shape shape = x.shape();
  auto backward = [shape](const Tensor& g) {
    Tensor gx = Tensor::empty(shape, g.dtype(), g.device());
    gx.fill_(g.item());
    return std::vector<Tensor>{gx};
  };
  if (on_device(x)) {
    require_device_f32("sum", x);
    VISPLAY_DEVICE_KERNEL(x.device(), sum_all, x.data<float>(), out.data<float>(), n, nullptr);
    return record_op(out, "sum", {x}, backward);
  }
  constexpr int64_t kChunk = 4096;
  int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks);
  dispatch_float("sum", x.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* p = x.data<T>();
#pragma omp parallel for schedule(static) if (n > kernels::cpu::kParallelMinElements)
    for (int64_t c = 0; c < chunks; ++c) {
      double s = 0;
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) s += p[i];
      partial[c] = s;
    }
    double total = 0;
    for (double s : partial) total += s;
    out.data<T>()[0] = static_cast<T>(total);
  });
  return record_op(out, "sum", {x}, backward);
}

Tensor sum(const Tensor& a, int64_t dim, bool keepdim) {
  check_floating("sum", a);
  if (a.dtype() == DType::bf16) return sum(f32(a), dim, keepdim).to(DType::bf16);
  int64_t d = normalize_dim("sum", dim, a.dim());
  Tensor x = a.contiguous();
  const Shape& s = x.shape();
  int64_t outer = 1, inner = 1, n = s[d];
  for (int64_t i = 0; i < d; ++i) outer *= s[i];
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= s[i];
  Shape out_shape = s;
  out_shape[d] = 1;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  if (on_device(x)) {
    require_device_f32("sum", x);
    VISPLAY_DEVICE_KERNEL(x.device(), sum_dim, x.data<float>(), out.data<float>(), outer, n, inner, nullptr);
  } else dispatch_float("sum", x.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* p = x.data<T>();
    T* po = out.data<T>();
    constexpr int64_t kCols = 256;
    int64_t col_blocks = (inner + kCols - 1) / kCols;
#pragma omp parallel for collapse(2) schedule(static) if (outer * n * inner > kernels::cpu::kParallelMinElements)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t cb = 0; cb < col_blocks; ++cb) {
        int64_t c0 = cb * kCols, c1 = std::min(inner, c0 + kCols);
        double acc[kCols] = {0};
        for (int64_t r = 0; r < n; ++r) {
          const T* row = p + (o * n + r) * inner;
          for (int64_t c = c0; c < c1; ++c) acc[c - c0] += row[c];
        }
        for (int64_t c = c0; c < c1; ++c) po[o * inner + c] = static_cast<T>(acc[c - c0]);
      }
  });
  Shape in_shape = s;
  Tensor result = record_op(out, "sum_dim", {x}, [in_shape, out_shape](const Tensor& g) {
    // broadcast g (keepdim shape) back over the summed dim
    Tensor zeros = Tensor::zeros(in_shape, g.dtype(), g.device());
    return std::vector<Tensor>{add(zeros, g.reshape(out_shape))};
  });
  if (keepdim) return result;
  Shape squeezed = s;
  squeezed.erase(squeezed.begin() + d);
  return result.reshape(squeezed);
}

Tensor mean(const Tensor& a) { return scale(sum(a), 1.0 / std::max<int64_t>(1, a.numel())); }
Tensor mean(const Tensor& a, int64_t dim, bool keepdim) {
  int64_t d = normalize_dim("mean", dim, a.dim());
  return scale(sum(a, d, keepdim), 1.0 / std::max<int64_t>(1, a.shape()[d]));
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  Tensor r = g;
  // Leading dims that the target does not have.
  while (r.dim() > static_cast<int64_t>(shape.size())) r = sum(r, 0, false);
  for (int64_t i = 0; i < r.dim(); ++i)
    if (shape[i] == 1 && r.shape()[i] != 1) r = sum(r, i, true);
  return r;
}

}  // namespace visplay
