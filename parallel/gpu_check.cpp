// The message of DYTRAIN_GPU_CHECK, with a hint for the failure users hit most: a peer rank that died.
#include "parallel/gpu_check.h"

#include <stdexcept>

#include "parallel/runtime.h"

namespace dytrain {

void throw_gpu_error(const std::string& what, const char* statement, const char* file, int line) {
  throw std::runtime_error(process_label() + ": " + what + " in " + statement + " at " + file + ":" +
                           std::to_string(line) +
                           ". HINT: NCCL_DEBUG=WARN shows NCCL's view; a remote error usually means another rank "
                           "failed first, look for its message.");
}

}  // namespace dytrain
