// Small text helpers shared by the sweep runner, monitor and report.
#pragma once
#include <string>

namespace dytrain {

// "42s", "3m05s", "2h10m"; "?" for a negative or non-finite duration.
std::string human_duration(double seconds);

// The text quoted for a POSIX shell when needed, so a printed command can be pasted back.
std::string shell_quote(const std::string& s);

}  // namespace dytrain
