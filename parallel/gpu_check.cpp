// The message of a failed NCCL call, with a hint for the failure users hit most: a peer rank that died.
#include "parallel/gpu_check.h"

#include <stdexcept>
#include <string>

#include "parallel/runtime.h"

namespace dytrain::cuda {

void check_status(ncclResult_t status, const char* statement, const char* file, int line) {
  if (status == ncclSuccess || status == ncclInProgress) return;
  throw std::runtime_error(process_label() + ": NCCL error " + ncclGetErrorString(status) + " (" +
                           ncclGetLastError(nullptr) + ") in " + statement + " at " + file + ":" +
                           std::to_string(line) +
                           ". HINT: NCCL_DEBUG=WARN shows NCCL's view; a remote error usually means another rank "
                           "failed first, look for its message.");
}

}  // namespace dytrain::cuda
