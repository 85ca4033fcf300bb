#include "runtime/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "runtime/allocator.h"

namespace visplay {

// ---------------------------------------------------------------------------
// helpers

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> st(shape.size());
  int64_t s = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

void op_error(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    op_error(op, std::string("dtype mismatch: ") + dtype_name(a.dtype()) + " " + shape_str(a.shape()) +
                     " vs " + dtype_name(b.dtype()) + " " + shape_str(b.shape()));
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device())
    op_error(op, "device mismatch: " + a.device().str() + " " + shape_str(a.shape()) + " vs " +
                     b.device().str() + " " + shape_str(b.shape()));
}

void check_floating(const char* op, const Tensor& a) {
  if (!is_floating(a.dtype()))
    op_error(op, std::string("expects a floating tensor, got ") + dtype_name(a.dtype()) + " " +
                     shape_str(a.shape()));
}

int64_t normalize_dim(const char* op, int64_t dim, int64_t ndim) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim)
    op_error(op, "dim " + std::to_string(dim) + " out of range for a " + std::to_string(ndim) +
                     "-d tensor");
  return d;
}

static void check_defined(const Tensor& t, const char* what) {
  if (!t.defined()) throw std::logic_error(std::string(what) + " on an undefined Tensor");
}

// ---------------------------------------------------------------------------
// storage

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  data = allocator_for(dev).allocate(nbytes == 0 ? 1 : nbytes);
}

Storage::~Storage() { allocator_for(device).deallocate(data, bytes == 0 ? 1 : bytes); }

// ---------------------------------------------------------------------------
// grad mode

static thread_local bool g_grad_enabled = true;
bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }
EnableGradGuard::EnableGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { g_grad_enabled = prev_; }

// ---------------------------------------------------------------------------
// creation

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    if (d < 0) op_error("empty", "negative dimension in shape " + shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(i);
  return from_vector(v, {n}, dtype, device);
}

// Converts n values of type S at src to type D at dst.
template <class S, class D>
static void convert_span(const S* src, D* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<S, D>) {
      dst[i] = src[i];
    } else if constexpr (std::is_same_v<D, bf16>) {
      dst[i] = bf16(static_cast<float>(src[i]));
    } else if constexpr (std::is_same_v<S, bf16>) {
      dst[i] = static_cast<D>(static_cast<float>(src[i]));
    } else {
      dst[i] = static_cast<D>(src[i]);
    }
  }
}

template <class F>
static void dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); break;
    case DType::bf16: f(bf16{}); break;
    case DType::f64: f(double{}); break;
    case DType::i32: f(int32_t{}); break;
    case DType::i64: f(int64_t{}); break;
  }
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, DType dtype,
                           Device device) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    op_error("from_vector", std::to_string(values.size()) + " values for shape " + shape_str(shape));
  Tensor host = empty(shape, dtype, kCPU);
  dispatch_dtype(dtype, [&](auto d) {
    using D = decltype(d);
    convert_span(values.data(), static_cast<D*>(host.raw_data()), shape_numel(shape));
  });
  return device == kCPU ? host : host.to(device);
}

template Tensor Tensor::from_vector(const std::vector<float>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<double>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<int32_t>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<int64_t>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<bf16>&, const Shape&, DType, Device);

// ---------------------------------------------------------------------------
// metadata

const Shape& Tensor::shape() const {
  check_defined(*this, "shape()");
  return impl_->shape;
}
int64_t Tensor::size(int64_t d) const { return shape()[normalize_dim("size", d, dim())]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
const std::vector<int64_t>& Tensor::strides() const {
  check_defined(*this, "strides()");
  return impl_->strides;
}
int64_t Tensor::offset() const { return impl_->offset; }
DType Tensor::dtype() const {
  check_defined(*this, "dtype()");
  return impl_->dtype;
}
Device Tensor::device() const {
  check_defined(*this, "device()");
  return impl_->storage->device;
}
const std::shared_ptr<Storage>& Tensor::storage() const { return impl_->storage; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  return "Tensor" + shape_str(shape()) + " " + dtype_name(dtype()) + " " + device().str();
}

void* Tensor::raw_data() const {
  check_defined(*this, "data()");
  return static_cast<char*>(impl_->storage->data) + impl_->offset * dtype_size(impl_->dtype);
}

template <class T>
T* Tensor::data() const {
  if (dtype() != dtype_of<T>::value)
    op_error("data", std::string("requested ") + dtype_name(dtype_of<T>::value) + " from a " +
                         dtype_name(dtype()) + " tensor " + shape_str(shape()));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template bf16* Tensor::data<bf16>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;

// ---------------------------------------------------------------------------
// strided copy with conversion: the one routine behind contiguous/to/copy_.

// Visits every element of a strided layout in row-major order, calling
// f(src_offset, linear_index) for runs along the last dimension.
static void for_each_row(const Shape& shape, const std::vector<int64_t>& strides,
                         const std::function<void(int64_t src_off, int64_t dst_off, int64_t n,
                                                  int64_t src_stride)>& f) {
  int64_t nd = static_cast<int64_t>(shape.size());
  if (shape_numel(shape) == 0) return;
  if (nd == 0) {
    f(0, 0, 1, 1);
    return;
  }
  int64_t inner = shape[nd - 1];
  int64_t rows = shape_numel(shape) / inner;
  std::vector<int64_t> idx(nd, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t off = 0;
    for (int64_t d = 0; d < nd - 1; ++d) off += idx[d] * strides[d];
    f(off, r * inner, inner, strides[nd - 1]);
    for (int64_t d = nd - 2; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// Copies src (any layout, host memory) into dst (contiguous, host memory).
static void host_copy_to_contiguous(const Tensor& src, const Tensor& dst) {
  dispatch_dtype(src.dtype(), [&](auto s) {
    using S = decltype(s);
    dispatch_dtype(dst.dtype(), [&](auto d) {
      using D = decltype(d);
      const S* sp = static_cast<const S*>(src.raw_data());
      D* dp = static_cast<D*>(dst.raw_data());
      if (src.is_contiguous()) {
        if constexpr (std::is_same_v<S, D>) {
          std::memcpy(dp, sp, src.numel() * sizeof(S));
        } else {
          convert_span(sp, dp, src.numel());
        }
        return;
      }
      for_each_row(src.shape(), src.strides(), [&](int64_t so, int64_t doff, int64_t n, int64_t st) {
        for (int64_t i = 0; i < n; ++i) convert_span(sp + so + i * st, dp + doff + i, 1);
      });
    });
  });
}

// Copy across devices with optional conversion. Non-host devices go through
// a contiguous host staging copy.
static void copy_any(const Tensor& src, const Tensor& dst) {
  if (src.device().is_host() && dst.device().is_host()) {
    if (dst.is_contiguous()) {
      host_copy_to_contiguous(src, dst);
      return;
    }
    Tensor tmp = Tensor::empty(dst.shape(), dst.dtype(), kCPU);
    host_copy_to_contiguous(src, tmp);
    // scatter tmp into the strided dst
    dispatch_dtype(dst.dtype(), [&](auto d) {
      using D = decltype(d);
      const D* tp = static_cast<const D*>(tmp.raw_data());
      D* dp = static_cast<D*>(dst.raw_data());
      for_each_row(dst.shape(), dst.strides(), [&](int64_t doff, int64_t toff, int64_t n, int64_t st) {
        for (int64_t i = 0; i < n; ++i) dp[doff + i * st] = tp[toff + i];
      });
    });
    return;
  }
  // At least one side is a device the host cannot read. A device source is
  // staged whole (its storage, so any strided view of it can be read on the
  // host); a strided device copy kernel would avoid the round trip.
  if (!src.device().is_host()) {
    DeviceMemory m = device_memory(src.device().type);
    if (!m.copy_to_host) op_error("copy", "no copy routine for device " + src.device().str());
    auto staged = std::make_shared<TensorImpl>();
    staged->storage = std::make_shared<Storage>(src.storage()->bytes, kCPU);
    m.copy_to_host(staged->storage->data, src.storage()->data, src.storage()->bytes);
    staged->offset = src.offset();
    staged->shape = src.shape();
    staged->strides = src.strides();
    staged->dtype = src.dtype();
    copy_any(Tensor(staged), dst);
    return;
  }
  // src on host, dst on a device
  if (!dst.is_contiguous()) op_error("copy", "strided destination on " + dst.device().str());
  Tensor host = Tensor::empty(dst.shape(), dst.dtype(), kCPU);
  host_copy_to_contiguous(src, host);
  DeviceMemory m = device_memory(dst.device().type);
  if (!m.copy_from_host) op_error("copy", "no copy routine for device " + dst.device().str());
  m.copy_from_host(dst.raw_data(), host.raw_data(), host.numel() * dtype_size(host.dtype()));
}

void Tensor::copy_(const Tensor& src) const {
  if (src.shape() != shape())
    op_error("copy_", "shape mismatch: destination " + shape_str(shape()) + " vs source " +
                          shape_str(src.shape()));
  copy_any(src, *this);
}

void Tensor::fill_(double value) const {
  if (!device().is_host()) {
    Tensor host = Tensor::full(shape(), value, dtype(), kCPU);
    copy_(host);
    return;
  }
  dispatch_dtype(dtype(), [&](auto d) {
    using D = decltype(d);
    D v;
    convert_span(&value, &v, 1);
    D* p = static_cast<D*>(raw_data());
    if (is_contiguous()) {
      std::fill(p, p + numel(), v);
    } else {
      for_each_row(shape(), strides(), [&](int64_t off, int64_t, int64_t n, int64_t st) {
        for (int64_t i = 0; i < n; ++i) p[off + i * st] = v;
      });
    }
  });
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = Tensor::empty(shape(), dtype_of<T>::value, kCPU);
  copy_any(*this, c);
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

double Tensor::item() const {
  if (numel() != 1) op_error("item", "tensor of shape " + shape_str(shape()) + " is not a single value");
  return to_vector<double>()[0];
}

// ---------------------------------------------------------------------------
// conversions (differentiable)

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), dtype(), device());
  copy_any(*this, out);
  return record_op(out, "clone", {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), t, device());
  copy_any(*this, out);
  DType from = dtype();
  if (!is_floating(t) || !is_floating(from)) return out;  // no gradient through integer casts
  return record_op(out, "to_dtype", {*this},
                   [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor out = Tensor::empty(shape(), dtype(), d);
  copy_any(*this, out);
  Device from = device();
  return record_op(out, "to_device", {*this},
                   [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
}

// ---------------------------------------------------------------------------
// views

static Tensor make_view(const Tensor& base, Shape shape, std::vector<int64_t> strides,
                        int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  return Tensor(impl);
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  Shape s = new_shape;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) op_error("reshape", "more than one -1 in " + shape_str(new_shape));
      infer = static_cast<int64_t>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel() % known != 0)
      op_error("reshape", "cannot reshape " + shape_str(shape()) + " into " + shape_str(new_shape));
    s[infer] = numel() / known;
  }
  if (shape_numel(s) != numel())
    op_error("reshape", "cannot reshape " + shape_str(shape()) + " (" + std::to_string(numel()) +
                            " elements) into " + shape_str(new_shape));
  Tensor src = contiguous();
  Tensor out = make_view(src, s, contiguous_strides(s), src.offset());
  Shape old = shape();
  return record_op(out, "reshape", {src},
                   [old](const Tensor& g) { return std::vector<Tensor>{g.reshape(old)}; });
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  a = normalize_dim("transpose", a, dim());
  b = normalize_dim("transpose", b, dim());
  Shape s = shape();
  std::vector<int64_t> st = strides();
  std::swap(s[a], s[b]);
  std::swap(st[a], st[b]);
  Tensor out = make_view(*this, s, st, offset());
  return record_op(out, "transpose", {*this},
                   [a, b](const Tensor& g) { return std::vector<Tensor>{g.transpose(a, b)}; });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = normalize_dim("unsqueeze", d, dim() + 1);
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = normalize_dim("squeeze", d, dim());
  if (shape()[d] != 1)
    op_error("squeeze", "dim " + std::to_string(d) + " of " + shape_str(shape()) + " is not 1");
  Shape s = shape();
  s.erase(s.begin() + d);
  return reshape(s);
}

Tensor slice_backward(const Tensor& g, const Shape& full, int64_t dim, int64_t start);

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end) const {
  d = normalize_dim("slice", d, dim());
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  if (start < 0 || end > n || start > end)
    op_error("slice", "range [" + std::to_string(start) + ", " + std::to_string(end) +
                          ") out of bounds for dim " + std::to_string(d) + " of " + shape_str(shape()));
  Shape s = shape();
  s[d] = end - start;
  Tensor out = make_view(*this, s, strides(), offset() + start * strides()[d]);
  Shape full = shape();
  return record_op(out, "slice", {*this}, [full, d, start](const Tensor& g) {
    return std::vector<Tensor>{slice_backward(g, full, d, start)};
  });
}

// The gradient of a slice: zeros with g written into the sliced range.
Tensor slice_backward(const Tensor& g, const Shape& full, int64_t dim, int64_t start) {
  Tensor out = Tensor::zeros(full, g.dtype(), g.device());
  Tensor window = out.slice(dim, start, start + g.shape()[dim]);
  window.copy_(g);
  return out;
}

// ---------------------------------------------------------------------------
// autograd

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  check_defined(*this, "set_requires_grad");
  if (impl_->grad_fn) op_error("set_requires_grad", "only leaf tensors can be marked; " + str() + " has history");
  if (on && !is_floating(dtype())) op_error("set_requires_grad", "integer tensors cannot require grad: " + str());
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl_->grad; }
void Tensor::zero_grad() const { impl_->grad = Tensor(); }
void Tensor::set_grad(const Tensor& g) const { impl_->grad = g; }
const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return impl_ ? impl_->grad_fn : none;
}

Tensor Tensor::detach() const {
  Tensor out = make_view(*this, shape(), strides(), offset());
  return out;
}

Tensor record_op(Tensor output, const char* name, std::vector<Tensor> inputs, BackwardFn backward) {
  if (!grad_enabled()) return output;
  bool any = false;
  for (const Tensor& t : inputs) any = any || t.requires_grad();
  if (!any) return output;
  // Inputs that need no gradient are dropped from the edge list (kept as
  // undefined placeholders so the rule's outputs still line up).
  for (Tensor& t : inputs)
    if (!t.requires_grad()) t = Tensor();
  auto node = std::make_shared<Node>(Node{name, std::move(inputs), std::move(backward)});
  output.impl()->grad_fn = std::move(node);
  output.impl()->requires_grad = true;
  return output;
}

// The recorded edges are inputs then params; the rule returns the gradients of the non-leaf
// inputs (from the nested backward's detached copies) and none for leaves, whose .grad the
// nested backward has already accumulated.
Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs,
                  const std::vector<Tensor>& params) {
  bool any = false;
  for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
  for (const Tensor& t : params) {
    if (!t.defined() || !t.is_leaf()) op_error("checkpoint", "params must be defined leaf tensors");
    any = any || t.requires_grad();
  }
  if (!grad_enabled() || !any) return fn(inputs);
  Tensor out;
  {
    NoGradGuard no_grad;
    out = fn(inputs);
  }
  if (!out.defined() || !is_floating(out.dtype()))
    op_error("checkpoint", "the block must return a defined floating tensor");
  std::vector<Tensor> edges = inputs;
  edges.insert(edges.end(), params.begin(), params.end());
  const size_t num_edges = edges.size();
  return record_op(out, "checkpoint", std::move(edges),
                   [fn, inputs, num_edges](const Tensor& grad_output) {
                     std::vector<Tensor> leaves;
                     leaves.reserve(inputs.size());
                     for (const Tensor& t : inputs) {
                       if (!t.defined()) {
                         leaves.emplace_back();
                         continue;
                       }
                       // A leaf input takes part itself, so its .grad accumulates each
                       // use's contribution in turn, as without the checkpoint; a non-leaf
                       // is cut from the outer graph and its summed gradient handed back.
                       if (t.is_leaf()) {
                         leaves.push_back(t);
                         continue;
                       }
                       Tensor leaf = t.detach();
                       leaf.impl()->grad_in_own_dtype = true;
                       if (t.requires_grad()) leaf.set_requires_grad(true);
                       leaves.push_back(leaf);
                     }
                     Tensor recomputed;
                     {
                       EnableGradGuard grad_on;
                       recomputed = fn(leaves);
                     }
                     std::vector<Tensor> grads(num_edges);
                     if (recomputed.requires_grad()) recomputed.backward(grad_output);
                     for (size_t i = 0; i < leaves.size(); ++i)
                       if (leaves[i].defined() && !inputs[i].is_leaf() && leaves[i].requires_grad())
                         grads[i] = leaves[i].grad();
                     return grads;
                   });
}

Tensor add(const Tensor& a, const Tensor& b);  // ops.h

DType leaf_grad_dtype(DType leaf_dtype) {
  return leaf_dtype == DType::bf16 ? DType::f32 : leaf_dtype;
}

// Adds g into acc (both same shape), returning the sum.
static Tensor accumulate(const Tensor& acc, const Tensor& g) {
  if (!acc.defined()) return g;
  return add(acc, g);
}

// Adds g into a leaf's .grad in the leaf's gradient dtype. A gradient the backward rule made
// in f32 for a bf16 leaf is kept in f32 (not rounded to bf16 first); a .grad set by hand in
// another dtype is widened before the sum.
static void accumulate_leaf_grad(TensorImpl* leaf, const Tensor& g) {
  const DType want = leaf->grad_in_own_dtype ? leaf->dtype : leaf_grad_dtype(leaf->dtype);
  Tensor acc = leaf->grad;
  if (acc.defined() && acc.dtype() != want) acc = acc.to(want);
  leaf->grad = accumulate(acc, g.dtype() == want ? g : g.to(want));
}

void Tensor::backward(const Tensor& grad_output) const {
  check_defined(*this, "backward");
  if (!requires_grad()) op_error("backward", str() + " does not require grad");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    if (numel() != 1)
      op_error("backward", "a non-scalar output " + shape_str(shape()) + " needs an explicit gradient");
    seed = Tensor::ones(shape(), dtype(), device());
  } else if (seed.shape() != shape()) {
    op_error("backward", "gradient shape " + shape_str(seed.shape()) + " does not match output " +
                             shape_str(shape()));
  }
  NoGradGuard no_grad;

  // Topological order of the tensors with history, outputs before inputs.
  std::vector<TensorImpl*> order;
  std::unordered_set<TensorImpl*> visited;
  std::vector<std::pair<TensorImpl*, size_t>> stack{{impl_.get(), 0}};
  visited.insert(impl_.get());
  while (!stack.empty()) {
    auto& [t, next] = stack.back();
    Node* node = t->grad_fn.get();
    if (node && next < node->inputs.size()) {
      TensorImpl* in = node->inputs[next++].impl();
      if (in && in->grad_fn && !visited.count(in)) {
        visited.insert(in);
        stack.push_back({in, 0});
      }
      continue;
    }
    order.push_back(t);
    stack.pop_back();
  }
  std::reverse(order.begin(), order.end());

  std::unordered_map<TensorImpl*, Tensor> grads;
  grads[impl_.get()] = seed;
  for (TensorImpl* t : order) {
    Node* node = t->grad_fn.get();
    if (!node) {  // the root itself may be a leaf
      accumulate_leaf_grad(t, grads[t]);
      continue;
    }
    auto it = grads.find(t);
    if (it == grads.end()) continue;
    Tensor g = it->second;
    grads.erase(it);
    std::vector<Tensor> in_grads = node->backward(g);
    if (in_grads.size() != node->inputs.size())
      throw std::logic_error(std::string("backward rule of ") + node->name + " returned " +
                             std::to_string(in_grads.size()) + " gradients for " +
                             std::to_string(node->inputs.size()) + " inputs");
    for (size_t i = 0; i < node->inputs.size(); ++i) {
      const Tensor& in = node->inputs[i];
      if (!in.defined() || !in_grads[i].defined()) continue;
      Tensor gi = in_grads[i];
      if (gi.shape() != in.shape())
        throw std::logic_error(std::string("backward rule of ") + node->name + " gave gradient " +
                               shape_str(gi.shape()) + " for input " + shape_str(in.shape()));
      if (in.grad_fn()) {
        if (gi.dtype() != in.dtype()) gi = gi.to(in.dtype());
        grads[in.impl()] = accumulate(grads[in.impl()], gi);
      } else {
        accumulate_leaf_grad(in.impl(), gi.contiguous());
      }
    }
  }
}

}  // namespace visplay
