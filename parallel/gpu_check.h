// The NCCL overload of the check family of kernels/cuda/check.h, so every GPU-side call in dytrain reads
// DYTRAIN_CUDA_CHECK(call) whether it calls the CUDA runtime, cuBLASLt or NCCL. NCCL failures also name the rank and
// host (process_label): a collective's error is about the job, not one process.
// ncclInProgress is not an error: a non-blocking communicator accepted the call and finishes it in the background;
// NcclCommunicator waits for that state itself (and times out) before its next call.
#pragma once
#include <nccl.h>

#include "kernels/cuda/check.h"

namespace dytrain::cuda {

void check_status(ncclResult_t status, const char* statement, const char* file, int line);

}  // namespace dytrain::cuda
