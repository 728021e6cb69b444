#include "trainer/model/init.h"

#include <cmath>

namespace dytrain {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t stream_key(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  uint64_t s = seed ^ h;
  return splitmix64(s);
}

void fill_normal(float* x, int64_t n, double std, uint64_t seed, const std::string& name) {
  uint64_t state = stream_key(seed, name);
  // Box-Muller on 53-bit uniforms in (0, 1]; two normals per pair of draws.
  auto uniform = [&state] { return (double((splitmix64(state) >> 11) + 1)) * 0x1.0p-53; };
  for (int64_t i = 0; i < n; i += 2) {
    double r = std::sqrt(-2.0 * std::log(uniform()));
    double phi = 2.0 * M_PI * uniform();
    x[i] = float(std * r * std::cos(phi));
    if (i + 1 < n) x[i + 1] = float(std * r * std::sin(phi));
  }
}

}  // namespace dytrain
