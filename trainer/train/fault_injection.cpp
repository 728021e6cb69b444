#include "trainer/train/fault_injection.h"

#include <chrono>
#include <cstdlib>
#include <regex>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

namespace dytrain {

std::optional<FaultSpec> parse_fault_spec(const std::string& value) {
  if (value.empty()) return std::nullopt;
  static const std::regex form(R"(^(backward):rank(\d{1,6}):step(\d{1,12})$)");
  std::smatch m;
  if (!std::regex_match(value, m, form))
    throw std::invalid_argument(fmt::format("DYTRAIN_TEST_THROW_AT='{}' is not of the form backward:rank<R>:step<S> "
                                            "(a test-only variable: unset it for a real run)",
                                            value));
  return FaultSpec{m[1].str(), std::stoi(m[2].str()), std::stoll(m[3].str())};
}

InjectedFault::InjectedFault(int world_rank, int world_size) : world_rank_(world_rank), world_size_(world_size) {
  const char* value = std::getenv("DYTRAIN_TEST_THROW_AT");
  spec_ = parse_fault_spec(value ? value : "");
}

InjectedFault::~InjectedFault() {
  if (fired_ && world_size_ > 1) std::this_thread::sleep_for(std::chrono::duration<double>(kTeardownWaitS));
}

void InjectedFault::at(const char* point, int64_t step) {
  if (!spec_ || spec_->rank != world_rank_ || spec_->step != step || spec_->point != point) return;
  fired_ = true;
  throw std::runtime_error(fmt::format("DYTRAIN_TEST_THROW_AT: injected failure in the {} pass of step {}", point,
                                       step));
}

}  // namespace dytrain
