// Tensor: a shared handle to (storage, offset, shape, strides, dtype) plus the
// autograd fields. Copies of a Tensor share everything; views (reshape of a
// contiguous tensor, transpose, slice) share storage with new shape/strides.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"

namespace visplay {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// A block of memory on one device, returned to its allocator when the last
// tensor that uses it goes away.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Tensor;
struct Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = kCPU);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = kCPU) {
    return full(shape, 1.0, dtype, device);
  }
  // Copies host values of type T into a new tensor of the given dtype.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            DType dtype = dtype_of<T>::value, Device device = kCPU);
  static Tensor arange(int64_t n, DType dtype = DType::i64, Device device = kCPU);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  const std::vector<int64_t>& strides() const;
  int64_t offset() const;  // in elements
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  std::string str() const;  // "Tensor[2, 3] f32 cpu"

  // ---- data access (host devices only; checks the dtype) ----
  template <class T> T* data() const;
  void* raw_data() const;  // pointer to the first element
  const std::shared_ptr<Storage>& storage() const;
  template <class T> std::vector<T> to_vector() const;  // any dtype, converted to T
  double item() const;  // single element as double

  // ---- conversions (differentiable) ----
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // ---- views (differentiable) ----
  Tensor reshape(const Shape& shape) const;  // a view when contiguous, else a copy; one -1 allowed
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;  // [start, end) along dim
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on = true);  // only on leaves
  // Accumulated gradient of a leaf (may be undefined), in leaf_grad_dtype(dtype()).
  Tensor grad() const;
  void zero_grad() const;                     // drops the accumulated gradient
  void set_grad(const Tensor& g) const;
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const { return grad_fn() == nullptr; }
  // Accumulates d(this)/d(leaf) into every leaf's grad. A non-scalar output
  // needs an explicit gradient of the same shape.
  void backward(const Tensor& grad_output = Tensor()) const;
  Tensor detach() const;  // shares storage, no history

  // ---- in-place (never on tensors that take part in autograd) ----
  void fill_(double value) const;
  void copy_(const Tensor& src) const;  // same shape; converts dtype; any device pair

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// A backward rule: given the gradient of the output, return one gradient per
// input (an undefined Tensor where an input needs none).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node {
  const char* name;
  std::vector<Tensor> inputs;
  BackwardFn backward;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;
  Shape shape;
  std::vector<int64_t> strides;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // set on outputs of differentiable ops
  Tensor grad;                    // accumulated on leaves
  // Set by checkpoint() on the leaf stand-ins of non-leaf inputs: their gradient accumulates
  // in their own dtype, as the graph they stand in for would, so gradients stay bit-identical.
  bool grad_in_own_dtype = false;
};

// The dtype in which a leaf's .grad accumulates: f32 for a bf16 leaf (a sum over
// micro-batches in bf16 would round away every contribution below half an ulp of the sum;
// the optimizer reads f32 anyway), the leaf's own dtype otherwise.
DType leaf_grad_dtype(DType leaf_dtype);

// ---- grad mode ----
bool grad_enabled();
// RAII scope in which ops record no history (inference, optimizer steps).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// RAII scope in which ops record history again (a checkpoint's recomputation runs inside
// backward, which records none).
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// Activation recomputation (gradient checkpointing). Runs fn(inputs) without recording its
// history, so the tensors fn makes inside are freed when it returns and only `inputs` (and
// the output) stay alive for backward. The output's backward re-runs fn with grad enabled
// (non-leaf inputs replaced by detached copies) and backpropagates the output gradient
// through that fresh graph: the copies' gradients flow on to the outer graph, and the
// gradients of the leaves fn reads (its parameters, leaf inputs) accumulate into their .grad
// directly, as they would without the checkpoint. Gradients are bit-identical to running fn
// directly when fn is deterministic, its intermediate tensors are not used outside it, and each
// parameter is used by one block. fn must read only `inputs`, `params` and tensors that need no
// gradient (captured by value: it runs again during backward). `params` lists the leaves fn reads
// that require grad, so the output requires grad even when no input does. Outside grad mode, or
// when nothing requires grad, this is just fn(inputs).
using CheckpointFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;
Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs,
                  const std::vector<Tensor>& params = {});

// Attaches a backward rule to an op's output when grad mode is on and some
// input requires grad; returns the output. Used by every differentiable op.
Tensor record_op(Tensor output, const char* name, std::vector<Tensor> inputs, BackwardFn backward);

// Contiguous row-major strides of a shape.
std::vector<int64_t> contiguous_strides(const Shape& shape);

// Error helpers: messages name the op and the shapes involved.
[[noreturn]] void op_error(const char* op, const std::string& what);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_floating(const char* op, const Tensor& a);
int64_t normalize_dim(const char* op, int64_t dim, int64_t ndim);

}  // namespace visplay
