// The cuda backend's plain GEMMs through cuBLASLt (row-major on a column-major library:
// C^T = op(B)^T op(A)^T, so B is passed as cuBLASLt's A and A as its B). Host code
// only, no kernels; left out of the sim build (it has no cuBLASLt).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <mutex>
#include <stdexcept>
#include <string>

#include "kernels/cuda/common.cuh"
#include "visplay/kernels/gemm.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {
namespace {

void check_lt(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt: ") + call + " failed with status " +
                             std::to_string(static_cast<int>(status)));
}

void check_cuda(cudaError_t err, const char* call) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA: ") + call + ": " + cudaGetErrorString(err));
}

// One handle and one 32 MiB workspace for the process (first device that asks).
struct LtContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 32u << 20;
};

LtContext& lt_context() {
  static LtContext ctx;
  static std::once_flag once;
  std::call_once(once, [] {
    check_lt(cublasLtCreate(&ctx.handle), "cublasLtCreate");
    check_cuda(cudaMalloc(&ctx.workspace, ctx.workspace_bytes), "cudaMalloc(cuBLASLt workspace)");
  });
  return ctx;
}

// RAII for the descriptors of one call.
struct LtCall {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtCall() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

void lt_gemm(cudaDataType_t ab_type, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
             const void* A, int lda, const void* B, int ldb, float beta, float* C, int ldc,
             void* stream, const char* what) {
  bool ok = M >= 0 && N >= 0 && K >= 0 && lda >= (trans_a ? M : K) && lda >= 1 &&
            ldb >= (trans_b ? K : N) && ldb >= 1 && ldc >= N && ldc >= 1;
  if (!ok)
    throw std::invalid_argument(std::string(what) + ": bad shape M=" + std::to_string(M) +
                                " N=" + std::to_string(N) + " K=" + std::to_string(K));
  if (M == 0 || N == 0) return;
  LtContext& ctx = lt_context();
  LtCall call;
  check_lt(cublasLtMatmulDescCreate(&call.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
  // cuBLASLt's A is our B (column-major view N x K), its B is our A (K x M).
  cublasOperation_t op_lt_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_lt_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  check_lt(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_lt_a,
                                          sizeof(op_lt_a)),
           "set TRANSA");
  check_lt(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_lt_b,
                                          sizeof(op_lt_b)),
           "set TRANSB");
  check_lt(cublasLtMatrixLayoutCreate(&call.a, ab_type, trans_b ? K : N, trans_b ? N : K, ldb),
           "layout A");
  check_lt(cublasLtMatrixLayoutCreate(&call.b, ab_type, trans_a ? M : K, trans_a ? K : M, lda),
           "layout B");
  check_lt(cublasLtMatrixLayoutCreate(&call.c, CUDA_R_32F, N, M, ldc), "layout C");
  check_lt(cublasLtMatmulPreferenceCreate(&call.pref), "PreferenceCreate");
  check_lt(cublasLtMatmulPreferenceSetAttribute(call.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &ctx.workspace_bytes, sizeof(ctx.workspace_bytes)),
           "set workspace");
  cublasLtMatmulHeuristicResult_t heuristic;
  int found = 0;
  check_lt(cublasLtMatmulAlgoGetHeuristic(ctx.handle, call.op, call.a, call.b, call.c, call.c,
                                          call.pref, 1, &heuristic, &found),
           "AlgoGetHeuristic");
  if (found == 0) throw std::runtime_error(std::string(what) + ": cuBLASLt found no algorithm");
  check_lt(cublasLtMatmul(ctx.handle, call.op, &alpha, B, call.a, A, call.b, &beta, C, call.c, C,
                          call.c, &heuristic.algo, ctx.workspace, ctx.workspace_bytes,
                          static_cast<cudaStream_t>(stream)),
           "Matmul");
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
              const float* B, int ldb, float beta, float* C, int ldc, void* stream) {
  lt_gemm(CUDA_R_32F, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream,
          "gemm_f32");
}

void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t* A,
               int lda, const uint16_t* B, int ldb, float beta, float* C, int ldc, void* stream) {
  lt_gemm(CUDA_R_16BF, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream,
          "gemm_bf16");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
