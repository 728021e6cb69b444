// One check for the status codes of the CUDA libraries the kernels call, overloaded on the status type (the CUDA
// runtime and cuBLASLt), so every call reads DYTRAIN_CUDA_CHECK(call). A failure throws std::runtime_error naming the
// library's error, the statement, file and line, and a HINT for what to do: the errors users actually hit (no GPU,
// wrong architecture, out of memory, no GEMM algorithm for a shape) get their own hint, the rest the generic advice
// (a kernel fault shows up at the next CUDA call; cuBLASLt explains itself with CUBLASLT_LOG_LEVEL=1).
// parallel/gpu_check.h adds the NCCL overload, so kernels/ does not depend on NCCL.
#pragma once
#include <cublas_api.h>  // cublasStatus_t (cuBLASLt returns cuBLAS status codes)
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace dytrain::cuda {

inline const char* cuda_error_hint(cudaError_t status) {
  switch (status) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return "no CUDA device: run on the GPU host or set train.device: cpu";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return "the kernels were built for another GPU: reconfigure with -DCMAKE_CUDA_ARCHITECTURES=<this GPU's "
             "compute capability, e.g. 90 for H100> and rebuild";
    case cudaErrorMemoryAllocation:
      return "out of GPU memory: lower train.micro_batch or the sequence length";
    default:
      return "a kernel fault is reported by the next CUDA call, not by the kernel that caused it: rerun with "
             "CUDA_LAUNCH_BLOCKING=1 or under compute-sanitizer to find it";
  }
}

inline void check_status(cudaError_t status, const char* statement, const char* file, int line) {
  if (status == cudaSuccess) return;
  throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
                           ") in " + statement + " at " + file + ":" + std::to_string(line) +
                           ". HINT: " + cuda_error_hint(status));
}

// cuBLASLt status codes by name. cublasGetStatusName lives in libcublas, which nothing else here links, so the names
// are spelled out.
inline const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

inline const char* cublas_error_hint(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "cuBLASLt could not start, usually because no GPU or driver is usable: check nvidia-smi, or set "
             "train.device: cpu";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "out of memory while cuBLASLt set itself up: lower train.micro_batch or the sequence length";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "no cuBLASLt algorithm for this shape/alignment/type: pass 16-byte aligned buffers with leading "
             "dimensions that are multiples of 8 elements, or give the Blas a larger workspace";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "this GPU lacks what the GEMM needs (bf16 tensor cores need compute capability 8.0 or newer): run on an "
             "H100/A100-class GPU";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "cuBLASLt rejected the GEMM description although dytrain checked the shapes first: rerun with "
             "CUBLASLT_LOG_LEVEL=1 to see which parameter, and report it with the shapes";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "the GEMM kernel failed, usually because of a bad device pointer or an earlier kernel's fault: rerun with "
             "CUDA_LAUNCH_BLOCKING=1 or under compute-sanitizer";
    default:
      return "rerun with CUBLASLT_LOG_LEVEL=1 to see cuBLASLt's own message";
  }
}

inline void check_status(cublasStatus_t status, const char* statement, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string("cuBLASLt error ") + cublas_status_name(status) + " in " + statement + " at " +
                           file + ":" + std::to_string(line) + ". HINT: " + cublas_error_hint(status));
}

}  // namespace dytrain::cuda

#define DYTRAIN_CUDA_CHECK(call) ::dytrain::cuda::check_status((call), #call, __FILE__, __LINE__)
