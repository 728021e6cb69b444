// One check for CUDA runtime and NCCL status codes, overloaded on the status type, so every GPU-side call in parallel/
// reads DYTRAIN_GPU_CHECK(call) and fails with rank, host, statement, file, line and the library's own message.
// ncclInProgress is not an error: a non-blocking communicator accepted the call and finishes it in the background;
// NcclCommunicator waits for that state itself (and times out) before its next call.
#pragma once
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

namespace dytrain {

[[noreturn]] void throw_gpu_error(const std::string& what, const char* statement, const char* file, int line);

inline void check_gpu_status(cudaError_t status, const char* statement, const char* file, int line) {
  if (status != cudaSuccess) {
    throw_gpu_error(std::string("CUDA error ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")",
                    statement, file, line);
  }
}

inline void check_gpu_status(ncclResult_t status, const char* statement, const char* file, int line) {
  if (status != ncclSuccess && status != ncclInProgress) {
    throw_gpu_error(std::string("NCCL error ") + ncclGetErrorString(status) + " (" + ncclGetLastError(nullptr) + ")",
                    statement, file, line);
  }
}

}  // namespace dytrain

#define DYTRAIN_GPU_CHECK(call) ::dytrain::check_gpu_status((call), #call, __FILE__, __LINE__)
