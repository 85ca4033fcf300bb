// Neural-network ops: each forward calls a kernel from kernels/cpu, and its
// backward rule sits right below it.
#include <cmath>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/vec_math.h"
#include "runtime/ops_common.h"
#include "visplay/kernels/attention.h"
#include "visplay/kernels/embedding.h"
#include "visplay/kernels/norm.h"
#include "visplay/kernels/rope.h"
#include "visplay/kernels/swiglu.h"

namespace visplay {
using namespace detail;
namespace kc = kernels::cpu;

// ---------------------------------------------------------------------------
Tensor embedding(const Tensor& weight, const Tensor& ids) {
  const char* op = "embedding";
  check_floating(op, weight);
  if (weight.dtype() == DType::bf16) return embedding(f32(weight), ids).to(DType::bf16);
  if (weight.dim() != 2) op_error(op, "weight must be [V, D], got " + shape_str(weight.shape()));
  Tensor idx = as_index(op, ids);
  int64_t V = weight.size(0), D = weight.size(1), n = idx.numel();
  const int64_t* pid = idx.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    if (pid[i] < 0 || pid[i] >= V)
      op_error(op, "id " + std::to_string(pid[i]) + " at position " + std::to_string(i) +
                       " out of range for a vocabulary of " + std::to_string(V));
  Tensor w = weight.contiguous();
  Shape out_shape = ids.shape();
  out_shape.push_back(D);
  Tensor out = Tensor::empty(out_shape, w.dtype(), w.device());
  if (on_device(w)) {
    require_device_f32(op, w);
    Tensor ids_dev = idx.to(w.device());
    Tensor ids32 = idx.to(DType::i32).to(w.device());
    VISPLAY_DEVICE_KERNEL(w.device(), embedding_forward, w.data<float>(), ids_dev.data<int64_t>(),
                          n, D, out.data<float>(), nullptr);
    return record_op(out, op, {w}, [=](const Tensor& g) {
      Tensor gc = g.contiguous();
      Tensor gw = Tensor::zeros({V, D}, DType::f32, gc.device());  // the kernel accumulates
      VISPLAY_DEVICE_KERNEL(gc.device(), embedding_backward, ids32.data<int32_t>(),
                            static_cast<int>(n), gc.data<float>(), static_cast<int>(D),
                            static_cast<int>(V), gw.data<float>(), nullptr);
      return std::vector<Tensor>{gw};
    });
  }
  dispatch_float(op, w.dtype(), [&](auto t) {
    using T = decltype(t);
    kc::embedding_forward<T>(w.data<T>(), pid, out.data<T>(), n, D);
  });
  return record_op(out, op, {w}, [idx, V, D, n](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor gw = Tensor::empty({V, D}, gc.dtype(), gc.device());
    dispatch_float("embedding_backward", gc.dtype(), [&](auto t) {
      using T = decltype(t);
      kc::embedding_backward<T>(gc.data<T>(), idx.data<int64_t>(), gw.data<T>(), n, V, D);
    });
    return std::vector<Tensor>{gw};
  });
}

// ---------------------------------------------------------------------------
Tensor rmsnorm(const Tensor& x, const Tensor& w, double eps) {
  const char* op = "rmsnorm";
  check_floating(op, x);
  if (any_bf16({&x, &w})) return rmsnorm(f32(x), f32(w), eps).to(DType::bf16);
  check_same_dtype(op, x, w);
  check_same_device(op, x, w);
  int64_t n = x.size(-1);
  if (w.dim() != 1 || w.size(0) != n)
    op_error(op,
             "weight " + shape_str(w.shape()) + " does not match input " + shape_str(x.shape()));
  Tensor xc = x.contiguous(), wc = w.contiguous();
  int64_t rows = xc.numel() / n;
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  Tensor rstd = Tensor::empty({rows}, xc.dtype(), xc.device());
  if (on_device(xc)) {
    require_device_f32(op, xc);
    VISPLAY_DEVICE_KERNEL(xc.device(), rmsnorm_forward, xc.data<float>(), wc.data<float>(),
                          static_cast<int>(rows), static_cast<int>(n), static_cast<float>(eps),
                          out.data<float>(), rstd.data<float>(), nullptr);
    Tensor xs = xc.detach(), ws = wc.detach();
    return record_op(out, op, {xc, wc}, [=](const Tensor& g) {
      Tensor gc = g.contiguous();
      Tensor dx = Tensor::empty(xs.shape(), DType::f32, xs.device());
      Tensor dw = Tensor::empty({n}, DType::f32, xs.device());
      VISPLAY_DEVICE_KERNEL(xs.device(), rmsnorm_backward, xs.data<float>(), ws.data<float>(),
                            rstd.data<float>(), gc.data<float>(), static_cast<int>(rows),
                            static_cast<int>(n), dx.data<float>(), dw.data<float>(), nullptr);
      return std::vector<Tensor>{dx, dw};
    });
  }
  dispatch_float(op, xc.dtype(), [&](auto t) {
    using T = decltype(t);
    kc::rmsnorm_forward<T>(xc.data<T>(), wc.data<T>(), out.data<T>(), rstd.data<T>(), rows, n, eps);
  });
  Tensor xs = xc.detach(), ws = wc.detach();
  bool need_w = wc.requires_grad();
  return record_op(out, op, {xc, wc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
    Tensor dw = need_w ? Tensor::empty({n}, xs.dtype(), xs.device()) : Tensor();
    dispatch_float("rmsnorm_backward", xs.dtype(), [&](auto t) {
      using T = decltype(t);
      kc::rmsnorm_backward<T>(gc.data<T>(), xs.data<T>(), ws.data<T>(), rstd.data<T>(),
                              dx.data<T>(), need_w ? dw.data<T>() : nullptr, rows, n);
    });
    return std::vector<Tensor>{dx, dw};
  });
}

Tensor layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  const char* op = "layernorm";
  check_floating(op, x);
  if (any_bf16({&x, &w, &b})) return layernorm(f32(x), f32(w), f32(b), eps).to(DType::bf16);
  check_same_dtype(op, x, w);
  check_same_dtype(op, x, b);
  check_same_device(op, x, w);
  int64_t n = x.size(-1);
  if (w.dim() != 1 || w.size(0) != n || b.dim() != 1 || b.size(0) != n)
    op_error(op, "weight " + shape_str(w.shape()) + " / bias " + shape_str(b.shape()) +
                     " do not match input " + shape_str(x.shape()));
  Tensor xc = x.contiguous(), wc = w.contiguous(), bc = b.contiguous();
  int64_t rows = xc.numel() / n;
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  Tensor mean = Tensor::empty({rows}, xc.dtype(), xc.device());
  Tensor rstd = Tensor::empty({rows}, xc.dtype(), xc.device());
  if (on_device(xc)) {
    require_device_f32(op, xc);
    VISPLAY_DEVICE_KERNEL(xc.device(), layernorm_forward, xc.data<float>(), wc.data<float>(),
                          bc.data<float>(), static_cast<int>(rows), static_cast<int>(n),
                          static_cast<float>(eps), out.data<float>(), mean.data<float>(),
                          rstd.data<float>(), nullptr);
    Tensor xs = xc.detach(), ws = wc.detach();
    return record_op(out, op, {xc, wc, bc}, [=](const Tensor& g) {
      Tensor gc = g.contiguous();
      Tensor dx = Tensor::empty(xs.shape(), DType::f32, xs.device());
      Tensor dw = Tensor::empty({n}, DType::f32, xs.device()),
             db = Tensor::empty({n}, DType::f32, xs.device());
      VISPLAY_DEVICE_KERNEL(xs.device(), layernorm_backward, xs.data<float>(), ws.data<float>(),
                            mean.data<float>(), rstd.data<float>(), gc.data<float>(),
                            static_cast<int>(rows), static_cast<int>(n), dx.data<float>(),
                            dw.data<float>(), db.data<float>(), nullptr);
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  dispatch_float(op, xc.dtype(), [&](auto t) {
    using T = decltype(t);
    kc::layernorm_forward<T>(xc.data<T>(), wc.data<T>(), bc.data<T>(), out.data<T>(),
                             mean.data<T>(), rstd.data<T>(), rows, n, eps);
  });
  Tensor xs = xc.detach(), ws = wc.detach();
  bool need_w = wc.requires_grad(), need_b = bc.requires_grad();
  return record_op(out, op, {xc, wc, bc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
    Tensor dw = need_w ? Tensor::empty({n}, xs.dtype(), xs.device()) : Tensor();
    Tensor db = need_b ? Tensor::empty({n}, xs.dtype(), xs.device()) : Tensor();
    dispatch_float("layernorm_backward", xs.dtype(), [&](auto t) {
      using T = decltype(t);
      kc::layernorm_backward<T>(gc.data<T>(), xs.data<T>(), ws.data<T>(), mean.data<T>(),
                                rstd.data<T>(), dx.data<T>(), need_w ? dw.data<T>() : nullptr,
                                need_b ? db.data<T>() : nullptr, rows, n);
    });
    return std::vector<Tensor>{dx, dw, db};
  });
}

// ---------------------------------------------------------------------------
Tensor rope(const Tensor& x, const Tensor& positions, double base) {
  const char* op = "rope";
  check_floating(op, x);
  if (x.dtype() == DType::bf16) return rope(f32(x), positions, base).to(DType::bf16);
  if (x.dim() != 4 || x.size(3) % 2 != 0)
    op_error(op, "input must be [B, S, H, D] with even D, got " + shape_str(x.shape()));
  int64_t B = x.size(0), S = x.size(1), H = x.size(2), D = x.size(3);
  Tensor pos = as_index(op, positions);
  if (pos.shape() == Shape{S}) {
    Tensor full = Tensor::empty({B, S}, DType::i64);
    for (int64_t b = 0; b < B; ++b)
      std::copy(pos.data<int64_t>(), pos.data<int64_t>() + S, full.data<int64_t>() + b * S);
    pos = full;
  } else if (pos.shape() != Shape{B, S}) {
    op_error(op, "positions " + shape_str(positions.shape()) + " must be [S] or [B, S] for input " +
                     shape_str(x.shape()));
  }
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  if (on_device(xc)) {
    require_device_f32(op, xc);
    Tensor pos32 = pos.to(DType::i32).to(xc.device());
    int tokens = static_cast<int>(B * S);
    VISPLAY_DEVICE_KERNEL(xc.device(), rope, xc.data<float>(), pos32.data<int32_t>(), tokens,
                          static_cast<int>(H), static_cast<int>(D), static_cast<float>(base), false,
                          out.data<float>(), nullptr);
    return record_op(out, op, {xc}, [=](const Tensor& g) {
      Tensor gc = g.contiguous();
      Tensor dx = Tensor::empty(gc.shape(), DType::f32, gc.device());
      VISPLAY_DEVICE_KERNEL(gc.device(), rope, gc.data<float>(), pos32.data<int32_t>(), tokens,
                            static_cast<int>(H), static_cast<int>(D), static_cast<float>(base),
                            true, dx.data<float>(), nullptr);
      return std::vector<Tensor>{dx};
    });
  }
  dispatch_float(op, xc.dtype(), [&](auto t) {
    using T = decltype(t);
    kc::rope_apply<T>(xc.data<T>(), out.data<T>(), pos.data<int64_t>(), B, S, H, D, base, false);
  });
  return record_op(out, op, {xc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
    dispatch_float("rope_backward", gc.dtype(), [&](auto t) {
      using T = decltype(t);
      kc::rope_apply<T>(gc.data<T>(), dx.data<T>(), pos.data<int64_t>(), B, S, H, D, base, true);
    });
    return std::vector<Tensor>{dx};
  });
}

// ---------------------------------------------------------------------------
// Pointwise activations: forward kernel + backward kernel pairs.

namespace {
// Row softmax / log-softmax on a sim/cuda device.
Tensor device_softmax(const char* op, const Tensor& x, bool log) {
  require_device_f32(op, x);
  Tensor xc = x.contiguous();
  int64_t n = xc.size(-1), rows = xc.numel() / std::max<int64_t>(1, n);
  Tensor out = Tensor::empty(xc.shape(), DType::f32, xc.device());
  VISPLAY_DEVICE_KERNEL(xc.device(), softmax_forward, xc.data<float>(), out.data<float>(), rows, n,
                        log, nullptr);
  Tensor ys = out.detach();
  return record_op(out, op, {xc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(ys.shape(), DType::f32, ys.device());
    VISPLAY_DEVICE_KERNEL(ys.device(), softmax_backward, gc.data<float>(), ys.data<float>(),
                          dx.data<float>(), rows, n, log, nullptr);
    return std::vector<Tensor>{dx};
  });
}

template <class Fwd, class Bwd>
Tensor activation(const char* op, const Tensor& x, Fwd fwd, Bwd bwd) {
  check_floating(op, x);
  if (x.dtype() == DType::bf16) return activation(op, f32(x), fwd, bwd).to(DType::bf16);
  if (on_device(x)) {
    std::string name = op;
    if (name == "gelu") return device_unary(op, kernels::UnaryOp::gelu, 0.0f, x);
    if (name == "silu") return device_unary(op, kernels::UnaryOp::silu, 0.0f, x);
    if (name == "softmax") return device_softmax(op, x, false);
    if (name == "log_softmax") return device_softmax(op, x, true);
  }
  require_cpu(op, x);
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  dispatch_float(op, xc.dtype(), [&](auto t) { fwd(t, xc, out); });
  Tensor xs = xc.detach(), ys = out.detach();
  return record_op(out, op, {xc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
    dispatch_float(op, xs.dtype(), [&](auto t) { bwd(t, gc, xs, ys, dx); });
    return std::vector<Tensor>{dx};
  });
}
}  // namespace

Tensor gelu(const Tensor& x) {
  return activation(
      "gelu", x,
      [](auto t, const Tensor& in, const Tensor& out) {
        using T = decltype(t);
        kc::gelu_forward<T>(in.data<T>(), out.data<T>(), in.numel());
      },
      [](auto t, const Tensor& g, const Tensor& in, const Tensor&, const Tensor& dx) {
        using T = decltype(t);
        kc::gelu_backward<T>(g.data<T>(), in.data<T>(), dx.data<T>(), in.numel());
      });
}

Tensor silu(const Tensor& x) {
  return activation(
      "silu", x,
      [](auto t, const Tensor& in, const Tensor& out) {
        using T = decltype(t);
        kc::silu_forward<T>(in.data<T>(), out.data<T>(), in.numel());
      },
      [](auto t, const Tensor& g, const Tensor& in, const Tensor&, const Tensor& dx) {
        using T = decltype(t);
        kc::silu_backward<T>(g.data<T>(), in.data<T>(), dx.data<T>(), in.numel());
      });
}

Tensor softmax(const Tensor& x) {
  return activation(
      "softmax", x,
      [](auto t, const Tensor& in, const Tensor& out) {
        using T = decltype(t);
        int64_t n = in.size(-1);
        kc::softmax_forward<T>(in.data<T>(), out.data<T>(), in.numel() / n, n);
      },
      [](auto t, const Tensor& g, const Tensor&, const Tensor& y, const Tensor& dx) {
        using T = decltype(t);
        int64_t n = y.size(-1);
        kc::softmax_backward<T>(g.data<T>(), y.data<T>(), dx.data<T>(), y.numel() / n, n);
      });
}

// log_softmax = x - logsumexp(x); dx = dy - softmax(x) * sum(dy)
Tensor log_softmax(const Tensor& x) {
  return activation(
      "log_softmax", x,
      [](auto t, const Tensor& in, const Tensor& out) {
        using T = decltype(t);
        int64_t n = in.size(-1), rows = in.numel() / n;
        const T* px = in.data<T>();
        T* po = out.data<T>();
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
          // The max is one of the inputs (exact in T); f32 exps by the
          // vectorised fast_exp (into the output row, overwritten below),
          // summed in double.
          T mt = -INFINITY;
          for (int64_t j = 0; j < n; ++j) mt = std::max(mt, px[r * n + j]);
          double s = kc::sum_exp(px + r * n, n, mt, po + r * n);
          double lse = static_cast<double>(mt) + std::log(s);
          for (int64_t j = 0; j < n; ++j) po[r * n + j] = static_cast<T>(px[r * n + j] - lse);
        }
      },
      [](auto t, const Tensor& g, const Tensor&, const Tensor& y, const Tensor& dx) {
        using T = decltype(t);
        int64_t n = y.size(-1), rows = y.numel() / n;
        const T *pg = g.data<T>(), *py = y.data<T>();
        T* pd = dx.data<T>();
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
          double s = 0;
          for (int64_t j = 0; j < n; ++j) s += pg[r * n + j];
          for (int64_t j = 0; j < n; ++j)
            pd[r * n + j] = static_cast<T>(pg[r * n + j] - kc::k_exp(py[r * n + j]) * s);
        }
      });
}

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu";
  check_floating(op, gate);
  if (any_bf16({&gate, &up})) return swiglu(f32(gate), f32(up)).to(DType::bf16);
  check_same_dtype(op, gate, up);
  check_same_device(op, gate, up);
  if (gate.shape() != up.shape())
    op_error(op,
             "gate " + shape_str(gate.shape()) + " and up " + shape_str(up.shape()) + " differ");
  Tensor gc = gate.contiguous(), uc = up.contiguous();
  Tensor out = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
  if (on_device(gc)) {
    require_device_f32(op, gc);
    VISPLAY_DEVICE_KERNEL(gc.device(), swiglu_forward, gc.data<float>(), uc.data<float>(),
                          gc.numel(), out.data<float>(), nullptr);
    Tensor gs = gc.detach(), us = uc.detach();
    return record_op(out, op, {gc, uc}, [gs, us](const Tensor& g) {
      Tensor dc = g.contiguous();
      Tensor dgate = Tensor::empty(gs.shape(), DType::f32, gs.device());
      Tensor dup = Tensor::empty(gs.shape(), DType::f32, gs.device());
      VISPLAY_DEVICE_KERNEL(gs.device(), swiglu_backward, gs.data<float>(), us.data<float>(),
                            dc.data<float>(), gs.numel(), dgate.data<float>(), dup.data<float>(),
                            nullptr);
      return std::vector<Tensor>{dgate, dup};
    });
  }
  dispatch_float(op, gc.dtype(), [&](auto t) {
    using T = decltype(t);
    kc::swiglu_forward<T>(gc.data<T>(), uc.data<T>(), out.data<T>(), gc.numel());
  });
  Tensor gs = gc.detach(), us = uc.detach();
  return record_op(out, op, {gc, uc}, [gs, us](const Tensor& g) {
    Tensor dc = g.contiguous();
    Tensor dgate = Tensor::empty(gs.shape(), gs.dtype(), gs.device());
    Tensor dup = Tensor::empty(gs.shape(), gs.dtype(), gs.device());
    dispatch_float("swiglu_backward", gs.dtype(), [&](auto t) {
      using T = decltype(t);
      kc::swiglu_backward<T>(dc.data<T>(), gs.data<T>(), us.data<T>(), dgate.data<T>(),
                             dup.data<T>(), gs.numel());
    });
    return std::vector<Tensor>{dgate, dup};
  });
}

// ---------------------------------------------------------------------------
// Attention on sim/cuda: the flash kernels of kernels/cuda/attention.cu, which
// take bf16 q/k/v (tensor cores, f32 accumulation) and describe padding as one
// contiguous run of real keys per row, [key_starts[b], key_lengths[b]).
namespace {
Tensor device_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                        const kc::AttentionShape& s, const Tensor& mask) {
  const char* op = "attention";
  if (s.D != 64 && s.D != 80 && s.D != 128)
    op_error(op, "device attention supports head dims 64, 80 and 128, got " + std::to_string(s.D) +
                     " (q " + shape_str(q.shape()) + ")");
  Device dev = q.device();
  std::vector<int32_t> starts(s.B, 0), lengths(s.B, static_cast<int32_t>(s.Sk));
  if (mask.defined()) {
    std::vector<int32_t> m = mask.to_vector<int32_t>();
    for (int64_t b = 0; b < s.B; ++b) {
      const int32_t* row = m.data() + b * s.Sk;
      int64_t first = 0, last = s.Sk;
      while (first < s.Sk && row[first] == 0) ++first;
      while (last > first && row[last - 1] == 0) --last;
      for (int64_t j = first; j < last; ++j)
        if (row[j] == 0)
          op_error(op,
                   "device attention needs each row's real keys to be one contiguous run; row " +
                       std::to_string(b) + " of key_mask has a gap at key " + std::to_string(j));
      starts[b] = static_cast<int32_t>(first);
      lengths[b] = static_cast<int32_t>(last);
    }
  }
  Tensor starts_dev = Tensor::from_vector(starts, {s.B}, DType::i32, dev);
  Tensor lengths_dev = Tensor::from_vector(lengths, {s.B}, DType::i32, dev);
  Tensor qb = q.detach().to(DType::bf16).contiguous(), kb = k.detach().to(DType::bf16).contiguous(),
         vb = v.detach().to(DType::bf16).contiguous();
  Tensor out = Tensor::empty({s.B, s.Sq, s.H, s.D}, DType::f32, dev);
  Tensor lse = Tensor::empty({s.B, s.H, s.Sq}, DType::f32, dev);
  // Each backend declares its own (identical) shape struct. Captures by value:
  // the backward rule keeps a copy.
  auto fill = [s, starts_dev](auto& shape) {
    shape.batch = static_cast<int>(s.B);
    shape.q_len = static_cast<int>(s.Sq);
    shape.kv_len = static_cast<int>(s.Sk);
    shape.q_heads = static_cast<int>(s.H);
    shape.kv_heads = static_cast<int>(s.Hkv);
    shape.head_dim = static_cast<int>(s.D);
    shape.causal = s.causal;
    shape.scale = static_cast<float>(s.scale);
    shape.key_starts = starts_dev.data<int32_t>();
  };
  auto bits = [](const Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data<bf16>()); };
  if (dev.type == DeviceType::sim) {
    kernels::sim::AttentionShape shape;
    fill(shape);
    kernels::sim::flash_attention_forward(bits(qb), bits(kb), bits(vb), lengths_dev.data<int32_t>(),
                                          shape, out.data<float>(), lse.data<float>(), nullptr);
  } else {
#ifdef VISPLAY_HAVE_CUDA
    kernels::cuda::AttentionShape shape;
    fill(shape);
    kernels::cuda::flash_attention_forward(bits(qb), bits(kb), bits(vb),
                                           lengths_dev.data<int32_t>(), shape, out.data<float>(),
                                           lse.data<float>(), nullptr);
#else
    op_error(op, "this build has no CUDA backend (device " + dev.str() + ")");
#endif
  }
  Tensor os = out.detach();
  Tensor result = record_op(out, op, {q, k, v}, [=](const Tensor& g) {
    Tensor gc = g.to(DType::f32).contiguous();
    Tensor dq = Tensor::empty({s.B, s.Sq, s.H, s.D}, DType::f32, dev);
    Tensor dk = Tensor::empty({s.B, s.Sk, s.Hkv, s.D}, DType::f32, dev);
    Tensor dv = Tensor::empty({s.B, s.Sk, s.Hkv, s.D}, DType::f32, dev);
    Tensor delta = Tensor::empty({s.B * s.H * s.Sq}, DType::f32, dev);
    if (dev.type == DeviceType::sim) {
      kernels::sim::AttentionShape shape;
      fill(shape);
      kernels::sim::flash_attention_backward(
          bits(qb), bits(kb), bits(vb), lengths_dev.data<int32_t>(), shape, os.data<float>(),
          gc.data<float>(), lse.data<float>(), delta.data<float>(), dq.data<float>(),
          dk.data<float>(), dv.data<float>(), nullptr);
    } else {
#ifdef VISPLAY_HAVE_CUDA
      kernels::cuda::AttentionShape shape;
      fill(shape);
      kernels::cuda::flash_attention_backward(
          bits(qb), bits(kb), bits(vb), lengths_dev.data<int32_t>(), shape, os.data<float>(),
          gc.data<float>(), lse.data<float>(), delta.data<float>(), dq.data<float>(),
          dk.data<float>(), dv.data<float>(), nullptr);
#endif
    }
    return std::vector<Tensor>{dq, dk, dv};
  });
  return q.dtype() == DType::bf16 ? result.to(DType::bf16) : result;
}
}  // namespace

// Shapes checked once for both backends; the device path groups the rows by prompt for the
// kernel (members / member_first) and passes the caches in their own dtype.
Tensor decode_attention_shared_prefix(const Tensor& q, const Tensor& prefix_k,
                                      const Tensor& prefix_v, const Tensor& prefix_mask,
                                      int64_t prefix_length, const std::vector<int64_t>& prefix_row,
                                      const Tensor& k_cache, const Tensor& v_cache,
                                      const Tensor& key_mask, int64_t length) {
  const char* op = "decode_attention_shared_prefix";
  if (q.dim() != 4 || q.size(1) != 1)
    op_error(op, "q must be [B, 1, H, D], got " + shape_str(q.shape()));
  const int64_t B = q.size(0), H = q.size(2), D = q.size(3);
  if (prefix_k.dim() != 4 || prefix_v.shape() != prefix_k.shape() || k_cache.dim() != 4 ||
      v_cache.shape() != k_cache.shape())
    op_error(op, "prefix k/v must be [P, Lp, Hkv, D] and cache k/v [B, L, Hkv, D] alike, got " +
                     shape_str(prefix_k.shape()) + ", " + shape_str(prefix_v.shape()) + ", " +
                     shape_str(k_cache.shape()) + ", " + shape_str(v_cache.shape()));
  const int64_t P = prefix_k.size(0), prefix_capacity = prefix_k.size(1), Hkv = k_cache.size(2),
                capacity = k_cache.size(1);
  if (k_cache.size(0) != B || prefix_k.size(2) != Hkv || prefix_k.size(3) != D ||
      k_cache.size(3) != D || Hkv <= 0 || H % Hkv != 0)
    op_error(op, "shapes do not match: q " + shape_str(q.shape()) + ", prefix " +
                     shape_str(prefix_k.shape()) + ", cache " + shape_str(k_cache.shape()));
  if (prefix_mask.shape() != Shape{P, prefix_capacity} || key_mask.shape() != Shape{B, capacity} ||
      prefix_mask.dtype() != DType::i32 || key_mask.dtype() != DType::i32)
    op_error(op, "masks must be i32 [P, prefix capacity] and [B, capacity], got " +
                     shape_str(prefix_mask.shape()) + " and " + shape_str(key_mask.shape()));
  if (static_cast<int64_t>(prefix_row.size()) != B)
    op_error(
        op, std::to_string(prefix_row.size()) + " prefix rows for a batch of " + std::to_string(B));
  for (int64_t r : prefix_row)
    if (r < 0 || r >= P)
      op_error(op, "prefix row " + std::to_string(r) + " out of range for " + std::to_string(P) +
                       " prefixes");
  if (prefix_length < 0 || prefix_length > prefix_capacity || length < 0 || length > capacity)
    op_error(op, "lengths " + std::to_string(prefix_length) + " / " + std::to_string(length) +
                     " exceed the capacities " + std::to_string(prefix_capacity) + " / " +
                     std::to_string(capacity));
  const Device dev = q.device();
  for (const Tensor* t : {&prefix_k, &prefix_v, &k_cache, &v_cache})
    if (t->device() != dev)
      op_error(op, "q is on " + dev.str() + ", a cache on " + t->device().str());
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  NoGradGuard no_grad;
  if (!on_device(q)) {
    Tensor qc = q.to(DType::f32).contiguous();
    Tensor pk = prefix_k.to(DType::f32).contiguous(), pv = prefix_v.to(DType::f32).contiguous();
    Tensor kc_ = k_cache.to(DType::f32).contiguous(), vc = v_cache.to(DType::f32).contiguous();
    Tensor pm = prefix_mask.contiguous(), km = key_mask.contiguous();
    kc::PrefixDecodeShape s;
    s.B = B, s.H = H, s.D = D, s.Hkv = Hkv;
    s.prefixes = P, s.prefix_capacity = prefix_capacity, s.prefix_length = prefix_length;
    s.capacity = capacity, s.length = length, s.scale = scale;
    Tensor out = Tensor::empty({B, 1, H, D});
    kc::decode_attention_shared_prefix(s, qc.data<float>(), pk.data<float>(), pv.data<float>(),
                                       pm.data<int32_t>(), prefix_row.data(), kc_.data<float>(),
                                       vc.data<float>(), km.data<int32_t>(), out.data<float>());
    return out;
  }
  static_assert(kDeviceDecodeMaxHeadDim == kernels::sim::kDecodePrefixMaxHeadDim);
  if (D > kDeviceDecodeMaxHeadDim)
    op_error(op, "head dim " + std::to_string(D) + " on " + dev.str() +
                     " exceeds the device kernel's " + std::to_string(kDeviceDecodeMaxHeadDim));
  const bool bf16_kv = k_cache.dtype() == DType::bf16;
  const DType kv = bf16_kv ? DType::bf16 : DType::f32;
  Tensor qc = q.to(DType::f32).contiguous();
  Tensor pk = prefix_k.to(kv).contiguous(), pv = prefix_v.to(kv).contiguous();
  Tensor kc_ = k_cache.to(kv).contiguous(), vc = v_cache.to(kv).contiguous();
  Tensor pm = prefix_mask.to(dev).contiguous(), km = key_mask.to(dev).contiguous();
  // The rows of each prompt, in row order.
  std::vector<int32_t> first(P + 1, 0), members(B);
  for (int64_t r : prefix_row) ++first[r + 1];
  int max_rows = 0;
  for (int64_t p = 0; p < P; ++p) {
    max_rows = std::max(max_rows, first[p + 1]);
    first[p + 1] += first[p];
  }
  {
    std::vector<int32_t> fill(first.begin(), first.end() - 1);
    for (int64_t b = 0; b < B; ++b) members[fill[prefix_row[b]]++] = static_cast<int32_t>(b);
  }
  Tensor members_dev = Tensor::from_vector(members, {B}, DType::i32, dev);
  Tensor first_dev = Tensor::from_vector(first, {P + 1}, DType::i32, dev);
  Tensor out = Tensor::empty({B, 1, H, D}, DType::f32, dev);
  auto fill_shape = [&](auto& shape) {
    shape.batch = static_cast<int>(B);
    shape.q_heads = static_cast<int>(H);
    shape.kv_heads = static_cast<int>(Hkv);
    shape.head_dim = static_cast<int>(D);
    shape.prefixes = static_cast<int>(P);
    shape.prefix_capacity = static_cast<int>(prefix_capacity);
    shape.prefix_length = static_cast<int>(prefix_length);
    shape.capacity = static_cast<int>(capacity);
    shape.length = static_cast<int>(length);
    shape.max_rows = max_rows;
    shape.scale = static_cast<float>(scale);
    shape.kv_bf16 = bf16_kv;
  };
  if (dev.type == DeviceType::sim) {
    kernels::sim::PrefixDecodeShape shape;
    fill_shape(shape);
    kernels::sim::decode_attention_shared_prefix(
        shape, qc.data<float>(), pk.raw_data(), pv.raw_data(), pm.data<int32_t>(),
        members_dev.data<int32_t>(), first_dev.data<int32_t>(), kc_.raw_data(), vc.raw_data(),
        km.data<int32_t>(), out.data<float>(), nullptr);
  } else {
#ifdef VISPLAY_HAVE_CUDA
    kernels::cuda::PrefixDecodeShape shape;
    fill_shape(shape);
    kernels::cuda::decode_attention_shared_prefix(
        shape, qc.data<float>(), pk.raw_data(), pv.raw_data(), pm.data<int32_t>(),
        members_dev.data<int32_t>(), first_dev.data<int32_t>(), kc_.raw_data(), vc.raw_data(),
        km.data<int32_t>(), out.data<float>(), nullptr);
#else
    op_error(op, "this build has no CUDA backend (device " + dev.str() + ")");
#endif
  }
  return out;
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& opt) {
  const char* op = "attention";
  check_floating(op, q);
  if (any_bf16({&q, &k, &v})) return attention(f32(q), f32(k), f32(v), opt).to(DType::bf16);
  check_same_dtype(op, q, k);
  check_same_dtype(op, q, v);
  check_same_device(op, q, k);
  check_same_device(op, q, v);
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || k.shape() != v.shape() ||
      q.size(0) != k.size(0) || q.size(3) != k.size(3) || k.size(2) == 0 ||
      q.size(2) % k.size(2) != 0)
    op_error(op,
             "expects q [B, Sq, H, D] and k, v [B, Sk, Hkv, D] with H a multiple of Hkv; got q " +
                 shape_str(q.shape()) + ", k " + shape_str(k.shape()) + ", v " +
                 shape_str(v.shape()));
  kc::AttentionShape s{q.size(0),  q.size(1),
                       k.size(1),  q.size(2),
                       k.size(2),  q.size(3),
                       opt.causal, opt.scale > 0 ? opt.scale : 1.0 / std::sqrt(double(q.size(3)))};
  if (s.causal && s.Sq > s.Sk)
    op_error(op, "causal attention needs Sq <= Sk, got q " + shape_str(q.shape()) + ", k " +
                     shape_str(k.shape()));
  Tensor mask;
  if (opt.key_mask.defined()) {
    if (opt.key_mask.shape() != Shape{s.B, s.Sk})
      op_error(op, "key_mask " + shape_str(opt.key_mask.shape()) + " must be [B, Sk] = [" +
                       std::to_string(s.B) + ", " + std::to_string(s.Sk) + "]");
    mask = opt.key_mask.to(DType::i32).contiguous();
  }
  if (on_device(q)) return device_attention(q, k, v, s, mask);
  Tensor qc = q.contiguous(), kc_ = k.contiguous(), vc = v.contiguous();
  Tensor out = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
  Tensor lse = Tensor::empty({s.B, s.H, s.Sq}, qc.dtype(), qc.device());
  const int32_t* pm = mask.defined() ? mask.data<int32_t>() : nullptr;
  dispatch_float(op, qc.dtype(), [&](auto t) {
    using T = decltype(t);
    kc::attention_forward<T>(s, qc.data<T>(), kc_.data<T>(), vc.data<T>(), pm, out.data<T>(),
                             lse.data<T>());
  });
  Tensor qs = qc.detach(), ks = kc_.detach(), vs = vc.detach(), os = out.detach();
  return record_op(out, op, {qc, kc_, vc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dq = Tensor::empty(qs.shape(), qs.dtype(), qs.device());
    Tensor dk = Tensor::empty(ks.shape(), ks.dtype(), ks.device());
    Tensor dv = Tensor::empty(vs.shape(), vs.dtype(), vs.device());
    const int32_t* pm2 = mask.defined() ? mask.data<int32_t>() : nullptr;
    dispatch_float("attention_backward", qs.dtype(), [&](auto t) {
      using T = decltype(t);
      kc::attention_backward<T>(s, qs.data<T>(), ks.data<T>(), vs.data<T>(), pm2, os.data<T>(),
                                lse.data<T>(), gc.data<T>(), dq.data<T>(), dk.data<T>(),
                                dv.data<T>());
    });
    return std::vector<Tensor>{dq, dk, dv};
  });
}

// ---------------------------------------------------------------------------
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  const char* op = "cross_entropy";
  check_floating(op, logits);
  if (logits.dtype() == DType::bf16)
    return cross_entropy(f32(logits), targets, ignore_index).to(DType::bf16);
  if (on_device(logits)) {
    // Composed from device ops: -sum(mask * log_softmax[target]) / count.
    if (logits.dim() != 2 || targets.dim() != 1 || targets.size(0) != logits.size(0))
      op_error(op, "expects logits [N, V] and targets [N], got " + shape_str(logits.shape()) +
                       " and " + shape_str(targets.shape()));
    std::vector<int64_t> t = as_index(op, targets).to_vector<int64_t>();
    std::vector<float> keep(t.size());
    double count = 0;
    for (size_t i = 0; i < t.size(); ++i) {
      keep[i] = t[i] == ignore_index ? 0.0f : 1.0f;
      count += keep[i];
      if (t[i] == ignore_index)
        t[i] = 0;
      else if (t[i] < 0 || t[i] >= logits.size(1))
        op_error(op, "target " + std::to_string(t[i]) + " at row " + std::to_string(i) +
                         " out of range for " + std::to_string(logits.size(1)) + " classes");
    }
    int64_t N = logits.size(0);
    Tensor idx = Tensor::from_vector(t, {N, 1}, DType::i64, logits.device());
    Tensor picked = gather(log_softmax(logits), 1, idx).reshape({N});
    Tensor weights = Tensor::from_vector(keep, {N}, DType::f32, logits.device());
    return scale(sum(mul(picked, weights)), count > 0 ? -1.0 / count : 0.0);
  }
  require_cpu(op, logits);
  if (logits.dim() != 2 || targets.dim() != 1 || targets.size(0) != logits.size(0))
    op_error(op, "expects logits [N, V] and targets [N], got " + shape_str(logits.shape()) +
                     " and " + shape_str(targets.shape()));
  Tensor tg = as_index(op, targets);
  int64_t N = logits.size(0), V = logits.size(1);
  for (int64_t i = 0; i < N; ++i) {
    int64_t t = tg.data<int64_t>()[i];
    if (t != ignore_index && (t < 0 || t >= V))
      op_error(op, "target " + std::to_string(t) + " at row " + std::to_string(i) +
                       " out of range for " + std::to_string(V) + " classes");
  }
  Tensor lc = logits.contiguous();
  Tensor lse = Tensor::empty({N}, lc.dtype(), lc.device());
  Tensor out = Tensor::empty({}, lc.dtype(), lc.device());
  int64_t count = 0;
  dispatch_float(op, lc.dtype(), [&](auto t) {
    using T = decltype(t);
    out.data<T>()[0] = static_cast<T>(kc::cross_entropy_forward<T>(
        lc.data<T>(), tg.data<int64_t>(), lse.data<T>(), N, V, ignore_index, &count));
  });
  Tensor ls = lc.detach();
  return record_op(out, op, {lc}, [=](const Tensor& g) {
    Tensor d = Tensor::empty(ls.shape(), ls.dtype(), ls.device());
    double scale = count ? g.item() / count : 0.0;
    dispatch_float("cross_entropy_backward", ls.dtype(), [&](auto t) {
      using T = decltype(t);
      kc::cross_entropy_backward<T>(ls.data<T>(), tg.data<int64_t>(), lse.data<T>(), d.data<T>(), N,
                                    V, ignore_index, scale);
    });
    return std::vector<Tensor>{d};
  });
}

// ---------------------------------------------------------------------------
Tensor concat(const std::vector<Tensor>& parts, int64_t dim) {
  const char* op = "concat";
  if (parts.empty()) op_error(op, "no tensors to concatenate");
  const Tensor& first = parts[0];
  int64_t d = normalize_dim(op, dim, first.dim());
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    check_same_dtype(op, first, p);
    check_same_device(op, first, p);
    bool ok = p.dim() == first.dim();
    for (int64_t j = 0; ok && j < p.dim(); ++j) ok = j == d || p.shape()[j] == first.shape()[j];
    if (!ok)
      op_error(op, "part " + std::to_string(i) + " " + shape_str(p.shape()) +
                       " does not match part 0 " + shape_str(first.shape()) + " outside dim " +
                       std::to_string(d));
    out_shape[d] += p.shape()[d];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  int64_t start = 0;
  std::vector<int64_t> starts;
  for (const Tensor& p : parts) {
    starts.push_back(start);
    out.detach().slice(d, start, start + p.shape()[d]).copy_(p);
    start += p.shape()[d];
  }
  std::vector<Tensor> inputs(parts.begin(), parts.end());
  std::vector<int64_t> sizes;
  for (const Tensor& p : parts) sizes.push_back(p.shape()[d]);
  return record_op(out, op, inputs, [d, starts, sizes](const Tensor& g) {
    std::vector<Tensor> grads;
    for (size_t i = 0; i < starts.size(); ++i)
      grads.push_back(g.slice(d, starts[i], starts[i] + sizes[i]).contiguous());
    return grads;
  });
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "gather";
  check_floating(op, x);
  if (x.dtype() == DType::bf16) return gather(f32(x), dim, index).to(DType::bf16);
  int64_t d = normalize_dim(op, dim, x.dim());
  Tensor idx = as_index(op, index);
  bool ok = idx.dim() == x.dim();
  for (int64_t j = 0; ok && j < x.dim(); ++j) ok = j == d || idx.shape()[j] == x.shape()[j];
  if (!ok)
    op_error(op, "index " + shape_str(index.shape()) + " must match input " + shape_str(x.shape()) +
                     " outside dim " + std::to_string(d));
  Tensor xc = x.contiguous();
  const Shape& xs = xc.shape();
  int64_t outer = 1, inner = 1, n = xs[d], m = idx.shape()[d];
  for (int64_t i = 0; i < d; ++i) outer *= xs[i];
  for (int64_t i = d + 1; i < xc.dim(); ++i) inner *= xs[i];
  const int64_t* pi = idx.data<int64_t>();
  for (int64_t i = 0; i < idx.numel(); ++i)
    if (pi[i] < 0 || pi[i] >= n)
      op_error(op, "index " + std::to_string(pi[i]) + " out of range for size " +
                       std::to_string(n) + " of dim " + std::to_string(d));
  Tensor out = Tensor::empty(idx.shape(), xc.dtype(), xc.device());
  Shape in_shape = xs;
  if (on_device(xc)) {
    require_device_f32(op, xc);
    Tensor idx_dev = idx.to(xc.device());
    VISPLAY_DEVICE_KERNEL(xc.device(), gather_forward, xc.data<float>(), idx_dev.data<int64_t>(),
                          out.data<float>(), outer, n, m, inner, nullptr);
    return record_op(out, op, {xc}, [=](const Tensor& g) {
      Tensor gc = g.contiguous();
      Tensor dx = Tensor::empty(in_shape, DType::f32, gc.device());
      VISPLAY_DEVICE_KERNEL(gc.device(), gather_backward, gc.data<float>(), idx_dev.data<int64_t>(),
                            dx.data<float>(), outer, n, m, inner, nullptr);
      return std::vector<Tensor>{dx};
    });
  }
  dispatch_float(op, xc.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* px = xc.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < inner; ++c) {
          int64_t at = (o * m + i) * inner + c;
          po[at] = px[(o * n + pi[at]) * inner + c];
        }
  });
  return record_op(out, op, {xc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::zeros(in_shape, gc.dtype(), gc.device());
    dispatch_float("gather_backward", gc.dtype(), [&](auto t) {
      using T = decltype(t);
      const T* pg = gc.data<T>();
      const int64_t* pi = idx.data<int64_t>();
      T* pd = dx.data<T>();
      // Serial over the gathered dim so repeated indices add in a fixed order.
#pragma omp parallel for schedule(static)
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < m; ++i)
          for (int64_t c = 0; c < inner; ++c) {
            int64_t at = (o * m + i) * inner + c;
            pd[(o * n + pi[at]) * inner + c] += pg[at];
          }
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace visplay
