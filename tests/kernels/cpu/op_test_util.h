// Helpers shared by the CPU op tests: seeded random tensors, the double-precision objective L = sum(w * y), a
// central finite-difference gradient of it, a gradient comparison that names the first bad index, and a scope guard
// for the OpenMP thread count.
//
// Finite differences of fp32 ops are noisy: the objective is accumulated in double, so its only noise is the fp32
// rounding of the outputs the perturbed element touches, about sqrt(#touched) * ulp(y) * |w| / (2h). The step is
// relative to the element (h = step * max(1, |x|)) and the quotient divides by the step actually taken after x +- h
// is rounded to fp32, so the step's rounding adds no error of its own.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace dytrain::test {

inline std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

inline double weighted_sum(const std::vector<float>& y, const std::vector<float>& w) {
  double s = 0.0;
  for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(w[i]) * y[i];
  return s;
}

// dL/dx[i] for every i by central differences; objective() re-runs the fp32 op on the current x.
template <class Objective>
std::vector<double> fd_gradient(float* x, size_t n, double step, Objective objective) {
  std::vector<double> g(n);
  for (size_t i = 0; i < n; ++i) {
    const float x0 = x[i];
    const double h = step * std::max(1.0, std::fabs(static_cast<double>(x0)));
    const float xp = static_cast<float>(x0 + h);
    const float xm = static_cast<float>(x0 - h);
    x[i] = xp;
    const double lp = objective();
    x[i] = xm;
    const double lm = objective();
    x[i] = x0;
    g[i] = (lp - lm) / (static_cast<double>(xp) - static_cast<double>(xm));
  }
  return g;
}

// Each |analytic - fd| <= atol + rtol * |fd|; reports the first few failures by name and index.
inline void expect_grad_near(const float* analytic, const std::vector<double>& fd, double atol, double rtol,
                             const std::string& name) {
  int failures = 0;
  for (size_t i = 0; i < fd.size() && failures < 5; ++i) {
    const double err = std::fabs(analytic[i] - fd[i]);
    if (!(err <= atol + rtol * std::fabs(fd[i]))) {
      ADD_FAILURE() << name << "[" << i << "]: analytic " << analytic[i] << " vs finite difference " << fd[i];
      ++failures;
    }
  }
}

// Sets the OpenMP thread count for the lifetime of the object.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n) : prev_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ScopedThreads() { omp_set_num_threads(prev_); }
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int prev_;
};

}  // namespace dytrain::test
