// Shared by the fuzz targets (one LLVMFuzzerTestOneInput per fuzz_<name>.cpp). The readers under test take paths,
// so each input is written to a file in a scratch directory of this process first.
//
// What counts as a finding (each aborts, so libFuzzer or the replay driver reports it with the input):
// - a crash, a sanitizer report or a hang (libFuzzer's -timeout) — nothing to do here;
// - std::bad_alloc or std::length_error: a size taken from the file without a bound (a tiny file must not ask for
//   gigabytes);
// - an exception with an empty message, or one that does not derive from std::exception;
// - a broken property a target checks on input the reader accepted (fuzz_check).
// Any other std::exception is the documented outcome for bad input: the readers throw with a message naming the
// file and what to do, and the CLI turns it into an exit code.
#pragma once
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dytrain::fuzz {

// This process's scratch directory ($TMPDIR/dytrain_fuzz_<pid>), created on first use and removed at exit.
const std::string& scratch_dir();

// Writes bytes to scratch_dir()/name (folders created) and returns the path.
std::string write_input(const std::string& name, std::string_view bytes);

// With DYTRAIN_FUZZ_VERBOSE set, prints what became of each input ("accepted" or the rejection message): shows
// which seeds reach past the first check when the corpus is edited.
void note_outcome(std::string_view what);

// Reports a finding on stderr and aborts.
[[noreturn]] void finding(const std::string& what);

inline void fuzz_check(bool ok, const std::string& what) {
  if (!ok) finding("property broken: " + what);
}

// Runs one input through fn and sorts its exceptions as described at the top of this file.
template <class Fn>
void expect_clean(Fn&& fn) {
  try {
    fn();
    note_outcome("accepted");
  } catch (const std::bad_alloc&) {
    finding("std::bad_alloc: an allocation size taken from the input without a bound");
  } catch (const std::length_error& e) {
    finding(std::string("std::length_error (a size taken from the input without a bound): ") + e.what());
  } catch (const std::exception& e) {
    if (std::string_view(e.what()).empty()) finding("an exception with an empty message");
    note_outcome(e.what());
  } catch (...) {
    finding("an exception that does not derive from std::exception");
  }
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace dytrain::fuzz
