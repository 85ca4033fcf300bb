// patch_embed: unfold + GEMM + bias + position embedding in one op. The cpu
// forward unfolds and calls BLAS; sim/cuda run the fused kernel of
// kernels/cuda/vision.cu. The backward (weight, bias, pos) is one GEMM over
// the unfolded patches plus two column sums, on either backend.
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/patch_embed.h"
#include "runtime/ops_common.h"
#include "visplay/kernels/gemm.h"
#include "visplay/kernels/vision.h"

namespace visplay {
using namespace detail;

Tensor patch_embed(const Tensor& images, const Tensor& weight, const Tensor& bias, const Tensor& pos,
                   int64_t patch) {
  const char* op = "patch_embed";
  if (images.dim() != 4 || patch <= 0 || images.size(2) % patch != 0 || images.size(3) % patch != 0)
    op_error(op, "images must be [B, C, H, W] with H and W multiples of the patch size " + std::to_string(patch) +
                     ", got " + shape_str(images.shape()));
  int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  int64_t N = (H / patch) * (W / patch), K = C * patch * patch;
  Tensor w = weight.dim() == 4 ? weight.reshape({weight.size(0), -1}) : weight;
  int64_t E = w.size(0);
  if (w.dim() != 2 || w.size(1) != K)
    op_error(op, "weight " + shape_str(weight.shape()) + " does not match " + std::to_string(C) + "-channel " +
                     std::to_string(patch) + "x" + std::to_string(patch) + " patches (expected [E, " +
                     std::to_string(K) + "])");
  if (bias.defined() && bias.shape() != Shape{E})
    op_error(op, "bias " + shape_str(bias.shape()) + " must be [" + std::to_string(E) + "]");
  if (pos.defined() && pos.shape() != Shape{N, E})
    op_error(op, "position embedding " + shape_str(pos.shape()) + " must be [" + std::to_string(N) + ", " +
                     std::to_string(E) + "]");
  check_same_device(op, images, w);
  // f64 on cpu (gradient checks); everything else computes in f32.
  DType t = (w.dtype() == DType::f64 && !on_device(images)) ? DType::f64 : DType::f32;
  Tensor img = images.to(t).contiguous(), wc = w.to(t).contiguous();
  // No bias is a zero bias for the kernels (which always add one), with no gradient.
  Tensor bc = bias.defined() ? bias.to(t).contiguous() : Tensor::zeros({E}, t, images.device());
  Tensor pc = pos.defined() ? pos.to(t).contiguous() : Tensor();
  Device dev = img.device();
  Tensor out = Tensor::empty({B, N, E}, t, dev);
  if (on_device(img)) {
    VISPLAY_DEVICE_KERNEL(dev, patch_embed_forward, img.data<float>(), nullptr, nullptr, nullptr,
                          static_cast<int>(B), static_cast<int>(C), static_cast<int>(H), static_cast<int>(W),
                          static_cast<int>(patch), wc.data<float>(), bc.data<float>(),
                          pc.defined() ? pc.data<float>() : nullptr, static_cast<int>(E), out.data<float>(), nullptr);
  } else {
    dispatch_float(op, t, [&](auto tag) {
      using T = decltype(tag);
      kernels::cpu::patch_embed_forward<T>(img.data<T>(), wc.data<T>(), bc.data<T>(),
                                           pc.defined() ? pc.data<T>() : nullptr, B, C, H, W, patch, E, out.data<T>());
    });
  }
  Tensor is = img.detach();
  bool need_pos = pc.defined();
  Tensor result = record_op(out, op, {wc, bias.defined() ? bc : Tensor(), pc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous().reshape({B * N, E});
    Tensor patches = Tensor::empty({B * N, K}, t, dev);
    if (on_device(is)) {
      VISPLAY_DEVICE_KERNEL(dev, unfold_patches, is.data<float>(), B, C, H, W, patch, patches.data<float>(), nullptr);
    } else {
      dispatch_float("patch_embed_backward", t, [&](auto tag) {
        using T = decltype(tag);
        kernels::cpu::unfold_patches<T>(is.data<T>(), B, C, H, W, patch, patches.data<T>());
      });
    }
    Tensor dw = matmul(gc.transpose(0, 1), patches);  // [E, K]
    Tensor db = sum(gc, 0);
    Tensor dpos = need_pos ? sum(g.contiguous(), 0) : Tensor();
    return std::vector<Tensor>{dw, db, dpos};
  });
  return images.dtype() == DType::bf16 ? result.to(DType::bf16) : result;
}

}  // namespace visplay
