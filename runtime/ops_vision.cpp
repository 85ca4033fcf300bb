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
  if (bias.shape() != Shape{E}) op_error(op, "bias " + shape_str(bias.shape()) + " must be [" + std::to_string(E) + "]");
  if (pos.defined() && pos.shape() != Shape{N, E})
    op_error(op, "position embedding " + shape_str(pos.shape()) + " must be [" + std::to_string(N) + ", " +
                     std::to_string(E) + "]");
  check_same_device(op, images, w);
  Tensor img = images.to(DType::f32).contiguous(), wc = w.to(DType::f32).contiguous(),
         bc = bias.to(DType::f32).contiguous();
  Tensor pc = pos.defined() ? pos.to(DType::f32).contiguous() : Tensor();
  Device dev = img.device();
  Tensor out = Tensor::empty({B, N, E}, DType::f32, dev);
  if (on_device(img)) {
    VISPLAY_DEVICE_KERNEL(dev, patch_embed_forward, img.data<float>(), nullptr, nullptr, nullptr,
                          static_cast<int>(B), static_cast<int>(C), static_cast<int>(H), static_cast<int>(W),
                          static_cast<int>(patch), wc.data<float>(), bc.data<float>(),
                          pc.defined() ? pc.data<float>() : nullptr, static_cast<int>(E), out.data<float>(), nullptr);
  } else {
    kernels::cpu::patch_embed_forward(img.data<float>(), wc.data<float>(), bc.data<float>(),
                                      pc.defined() ? pc.data<float>() : nullptr, B, C, H, W, patch, E,
                                      out.data<float>());
  }
  Tensor is = img.detach();
  bool need_pos = pc.defined();
  Tensor result = record_op(out, op, {wc, bc, pc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous().reshape({B * N, E});
    Tensor patches = Tensor::empty({B * N, K}, DType::f32, dev);
    if (on_device(is)) {
      VISPLAY_DEVICE_KERNEL(dev, unfold_patches, is.data<float>(), B, C, H, W, patch, patches.data<float>(), nullptr);
    } else {
      kernels::cpu::unfold_patches(is.data<float>(), B, C, H, W, patch, patches.data<float>());
    }
    Tensor dw = matmul(gc.transpose(0, 1), patches);  // [E, K]
    Tensor db = sum(gc, 0);
    Tensor dpos = need_pos ? sum(g.contiguous(), 0) : Tensor();
    return std::vector<Tensor>{dw, db, dpos};
  });
  return result.to(images.dtype() == DType::bf16 ? DType::bf16 : DType::f32);
}

}  // namespace visplay
