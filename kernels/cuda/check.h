// One check for the status codes of the CUDA libraries the kernels call, overloaded on the status type (cuBLAS gets
// its overload beside this one when the GEMMs arrive), so every call reads DYTRAIN_CUDA_CHECK(call). A failure throws
// std::runtime_error naming the library's error, the statement, file and line, and a HINT for what to do: the errors
// users actually hit (no GPU, wrong architecture, out of memory) get their own hint, the rest the generic advice that
// a kernel fault shows up at the next CUDA call.
// parallel/gpu_check.h has the same shape for the communication layer; it stays separate so kernels/ does not depend
// on NCCL.
#pragma once
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

}  // namespace dytrain::cuda

#define DYTRAIN_CUDA_CHECK(call) ::dytrain::cuda::check_status((call), #call, __FILE__, __LINE__)
