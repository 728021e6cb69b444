// Deterministic parameter initialisation. Each tensor draws from its own stream, keyed by (seed, tensor name), so a
// tensor's values do not depend on which other tensors exist or on the order they are created in: a model sliced for
// tensor parallelism, or one with an extra tensor, starts from the same numbers. The generator (splitmix64 and
// Box-Muller) is written out here because std:: distributions differ between standard libraries.
#pragma once
#include <cstdint>
#include <string>

namespace dytrain {

// x (n) ~ N(0, std^2), from the stream of (seed, name).
void fill_normal(float* x, int64_t n, double std, uint64_t seed, const std::string& name);

// The 64-bit stream key of (seed, name): FNV-1a of the name, mixed with the seed.
uint64_t stream_key(uint64_t seed, const std::string& name);

// splitmix64: the next 64-bit output of state (advanced in place).
uint64_t splitmix64(uint64_t& state);

}  // namespace dytrain
