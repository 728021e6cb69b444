// The cuBLASLt GEMMs (kernels/cuda/matmul.cuh).
//
// On the CPU (these run without a GPU): check_gemm names each bad field; detail::lt_problem, the row-major to
// column-major mapping, is interpreted with cuBLASLt's column-major semantics and must give, element for element and
// bit for bit, the row-major product computed directly from the Gemm (every transpose, D type, C mode, padded leading
// dimensions, batches with strides, a broadcast operand); detail::alignment_bytes on known addresses.
// On a GPU: matmul_forward / matmul_backward against the CPU ops (kernels/cpu/matmul.h) on the same bf16 inputs, and
// gemm() against a double-precision loop over every transpose, D type, alpha / beta / C mode, batches with strides
// and views one element off alignment, with the padding between rows and batch entries checked untouched; reruns
// bit-identical; the argument checks of the linear layers.
//
// Tolerances. One fp32 evaluation of alpha * sum_{K terms} a b + beta * c is within
//   s = (K + 2) * 2^-24 * S,   S = |alpha| sum |a b| + |beta c|,
// of the exact value: K roundings of the sum (the K u bound of the fp32-accumulated dot product; bf16 products are
// exact in fp32, and tensor cores that add several products per rounding round fewer times), one for alpha and one
// for adding beta c. The bound holds for any order of summation, split-K included (its partial sums are fp32, see
// matmul.cu). S is computed in fp32 (the CPU op on |a| and |b|), within K 2^-24 of itself: noise next to the bound.
// - fp32 D against the double loop: s. Against the CPU op, which carries its own s: 2 s.
// - bf16 D: the GPU rounds its fp32 value v once, by at most half an ulp of v. When v lies in want's binade or below,
//   that is at most half an ulp of want; when v is in a higher binade (|v| <= |want| + distance), at most
//   2^-8 |v| <= ulp(want) + 2^-8 distance. So |got - want| <= ulp(want) + (1 + 2^-8) * distance, distance being s
//   against the double loop and 2 s against the CPU op.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cuda/matmul.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

using bf16 = __nv_bfloat16;
using cuda::DType;
using cuda::Gemm;

constexpr double kF32 = 0x1p-24;  // unit roundoff of fp32

double fp32_slack(int64_t terms, double scale) { return (static_cast<double>(terms) + 2.0) * kF32 * scale; }

// The bf16 rule of the header comment: distance bounds |v - want| before the GPU's rounding.
double bf16_tolerance(double want, double distance) { return bf16_ulp(want) + (1.0 + 0x1p-8) * distance; }

int64_t element_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

// --- a Gemm's buffers on the host and its row-major product in double ---------------------------------------------

// The four buffers a Gemm touches, as floats (bf16-exact where the Gemm reads bf16), and where each starts in the
// address space of the Gemm's pointers (device addresses, or stand-ins on the CPU).
struct Buffers {
  std::vector<float> a, b, c, d;
  uintptr_t base_a = 0, base_b = 0, base_c = 0, base_d = 0;
};

int64_t offset_in(const void* p, uintptr_t base, int64_t bytes) {
  return static_cast<int64_t>((reinterpret_cast<uintptr_t>(p) - base) / static_cast<uintptr_t>(bytes));
}

// The D buffer after the product: value, and for each written element the scale S of the header comment; elements
// not written keep D's initial value with written == 0.
struct Expected {
  std::vector<double> value, scale;
  std::vector<char> written;
};

Expected row_major_product(const Gemm& g, const Buffers& h) {
  const int64_t d_bytes = element_bytes(g.d_type);
  Expected e{std::vector<double>(h.d.begin(), h.d.end()), std::vector<double>(h.d.size(), 0.0),
             std::vector<char>(h.d.size(), 0)};
  const int64_t oa = offset_in(g.a, h.base_a, 2);
  const int64_t ob = offset_in(g.b, h.base_b, 2);
  const int64_t od = offset_in(g.d, h.base_d, d_bytes);
  const bool c_is_d = g.c == nullptr || g.c == g.d;
  const std::vector<float>& c_buf = c_is_d ? h.d : h.c;
  const int64_t oc = c_is_d ? od : offset_in(g.c, h.base_c, d_bytes);
  for (int64_t bt = 0; bt < g.batch; ++bt) {
    for (int64_t r = 0; r < g.m; ++r) {
      for (int64_t col = 0; col < g.n; ++col) {
        double sum = 0.0, abs_sum = 0.0;
        for (int64_t l = 0; l < g.k; ++l) {
          const double x = h.a[oa + bt * g.stride_a + (g.trans_a ? l * g.lda + r : r * g.lda + l)];
          const double y = h.b[ob + bt * g.stride_b + (g.trans_b ? col * g.ldb + l : l * g.ldb + col)];
          sum += x * y;
          abs_sum += std::fabs(x * y);
        }
        const int64_t at = bt * g.stride_d + r * g.ldd + col;
        const double c = g.beta != 0.0f ? c_buf[oc + at] : 0.0;
        e.value[od + at] = g.alpha * sum + g.beta * c;
        e.scale[od + at] = std::fabs(g.alpha) * abs_sum + std::fabs(g.beta * c);
        e.written[od + at] = 1;
      }
    }
  }
  return e;
}

// A test problem: shapes, transposes, D type, scalars, how C is given, padding of every leading dimension and batch
// stride, and an offset of every pointer from its buffer's start (1: views off the 16-byte alignment).
enum class CMode { none, separate, in_place, null_means_d };

struct Case {
  int64_t m, n, k;
  bool trans_a = false, trans_b = false;
  DType d_type = DType::bf16;
  float alpha = 1.0f, beta = 0.0f;
  CMode c_mode = CMode::none;
  int batch = 1;
  int64_t pad = 0;           // added to each leading dimension and batch stride
  int64_t offset = 0;        // elements between each buffer's start and the Gemm's pointer
  bool broadcast_b = false;  // stride_b = 0: every batch entry reads the same B
  bool nan_d = false;        // D starts as NaN: it must be written without being read
};

std::string case_name(const Case& c) {
  return "m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) +
         " trans_a=" + std::to_string(c.trans_a) + " trans_b=" + std::to_string(c.trans_b) +
         " d=" + (c.d_type == DType::f32 ? "f32" : "bf16") + " alpha=" + std::to_string(c.alpha) +
         " beta=" + std::to_string(c.beta) + " c_mode=" + std::to_string(static_cast<int>(c.c_mode)) +
         " batch=" + std::to_string(c.batch) + " pad=" + std::to_string(c.pad) + " offset=" + std::to_string(c.offset);
}

// The Gemm of c with its pointers at base_* + offset, and host buffers of random values sized to hold it.
struct Problem {
  Gemm g;
  Buffers h;
};

Problem make_problem(const Case& c, uintptr_t base_a, uintptr_t base_b, uintptr_t base_c, uintptr_t base_d) {
  Gemm g;
  g.m = c.m;
  g.n = c.n;
  g.k = c.k;
  g.trans_a = c.trans_a;
  g.trans_b = c.trans_b;
  g.d_type = c.d_type;
  g.alpha = c.alpha;
  g.beta = c.beta;
  g.batch = c.batch;
  g.lda = (c.trans_a ? c.m : c.k) + c.pad;
  g.ldb = (c.trans_b ? c.k : c.n) + c.pad;
  g.ldd = c.n + c.pad;
  const int64_t rows_a = c.trans_a ? c.k : c.m;
  const int64_t rows_b = c.trans_b ? c.n : c.k;
  g.stride_a = rows_a * g.lda + c.pad;
  g.stride_b = c.broadcast_b ? 0 : rows_b * g.ldb + c.pad;
  g.stride_d = c.m * g.ldd + c.pad;
  const auto size = [&](int64_t rows, int64_t ld, int64_t stride) {
    return static_cast<size_t>(c.offset + (c.batch - 1) * stride + rows * ld);
  };
  Problem p;
  p.h.a = random_bf16_values(size(rows_a, g.lda, g.stride_a), 11, -1.0f, 1.0f);
  p.h.b = random_bf16_values(size(rows_b, g.ldb, g.stride_b), 12, -1.0f, 1.0f);
  p.h.c = random_bf16_values(size(c.m, g.ldd, g.stride_d), 13, -2.0f, 2.0f);
  p.h.d = c.nan_d ? std::vector<float>(p.h.c.size(), std::nanf("")) : random_bf16_values(p.h.c.size(), 14, -2.0f, 2.0f);
  p.h.base_a = base_a;
  p.h.base_b = base_b;
  p.h.base_c = base_c;
  p.h.base_d = base_d;
  const int64_t d_bytes = element_bytes(c.d_type);
  g.a = reinterpret_cast<const bf16*>(base_a + c.offset * 2);
  g.b = reinterpret_cast<const bf16*>(base_b + c.offset * 2);
  g.d = reinterpret_cast<void*>(base_d + c.offset * d_bytes);
  switch (c.c_mode) {
    case CMode::none:
    case CMode::null_means_d:
      g.c = nullptr;
      break;
    case CMode::separate:
      g.c = reinterpret_cast<const void*>(base_c + c.offset * d_bytes);
      break;
    case CMode::in_place:
      g.c = g.d;
      break;
  }
  p.g = g;
  return p;
}

// The cases of the mapping and GPU gemm tests: every transpose pair and D type, each with plain, scaled, accumulating,
// in-place, batched (padded, broadcast) and misaligned variants.
std::vector<Case> gemm_cases() {
  std::vector<Case> cases;
  for (DType d_type : {DType::bf16, DType::f32}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
      const auto add = [&](Case c) {
        c.trans_a = ta;
        c.trans_b = tb;
        c.d_type = d_type;
        cases.push_back(c);
      };
      add({7, 13, 5});
      add({1, 1, 1});
      add({64, 130, 257});
      Case scaled{33, 17, 65};
      scaled.alpha = 0.5f;
      scaled.beta = -1.5f;
      scaled.c_mode = CMode::separate;
      add(scaled);
      Case accumulate{9, 24, 40};
      accumulate.beta = 1.0f;
      accumulate.c_mode = CMode::null_means_d;
      add(accumulate);
      Case in_place{16, 8, 31};
      in_place.beta = 0.25f;
      in_place.c_mode = CMode::in_place;
      add(in_place);
      Case unread{12, 10, 9};
      unread.nan_d = true;
      add(unread);
      Case batched{9, 10, 11};
      batched.batch = 3;
      batched.pad = 3;
      batched.alpha = -2.0f;
      batched.beta = 0.5f;
      batched.c_mode = CMode::separate;
      add(batched);
      Case broadcast{8, 16, 24};
      broadcast.batch = 4;
      broadcast.broadcast_b = true;
      add(broadcast);
      Case misaligned{15, 21, 19};
      misaligned.offset = 1;
      misaligned.beta = 1.0f;
      misaligned.c_mode = CMode::separate;
      add(misaligned);
    }
  }
  return cases;
}

// --- check_gemm (CPU) ---------------------------------------------------------------------------------------------

// A valid problem on stand-in addresses (never dereferenced): A (3, 5), B (5, 4), D (3, 4).
Gemm valid_gemm() {
  Gemm g;
  g.a = reinterpret_cast<const bf16*>(uintptr_t{0x1000});
  g.b = reinterpret_cast<const bf16*>(uintptr_t{0x2000});
  g.d = reinterpret_cast<void*>(uintptr_t{0x3000});
  g.m = 3;
  g.n = 4;
  g.k = 5;
  g.lda = 5;
  g.ldb = 4;
  g.ldd = 4;
  return g;
}

TEST(CudaGemmArguments, CheckGemmNamesTheBadField) {
  struct Bad {
    const char* field;
    const char* why;
    std::function<void(Gemm&)> change;
  };
  const std::vector<Bad> bad = {
      {"m", "zero", [](Gemm& g) { g.m = 0; }},
      {"n", "negative", [](Gemm& g) { g.n = -1; }},
      {"k", "zero", [](Gemm& g) { g.k = 0; }},
      {"m", "beyond int32", [](Gemm& g) { g.m = int64_t{1} << 31; }},
      {"batch", "zero", [](Gemm& g) { g.batch = 0; }},
      {"a", "null", [](Gemm& g) { g.a = nullptr; }},
      {"b", "null", [](Gemm& g) { g.b = nullptr; }},
      {"d", "null", [](Gemm& g) { g.d = nullptr; }},
      {"a", "odd address", [](Gemm& g) { g.a = reinterpret_cast<const bf16*>(uintptr_t{0x1001}); }},
      {"d", "fp32 on a 2-byte boundary",
       [](Gemm& g) {
         g.d = reinterpret_cast<void*>(uintptr_t{0x3002});
         g.d_type = DType::f32;
       }},
      {"c", "read at an odd address",
       [](Gemm& g) {
         g.c = reinterpret_cast<const void*>(uintptr_t{0x4001});
         g.beta = 1.0f;
       }},
      {"lda", "< k", [](Gemm& g) { g.lda = 4; }},
      {"lda", "< m with trans_a",
       [](Gemm& g) {
         g.trans_a = true;
         g.lda = 2;
       }},
      {"ldb", "< n", [](Gemm& g) { g.ldb = 3; }},
      {"ldb", "< k with trans_b",
       [](Gemm& g) {
         g.trans_b = true;
         g.ldb = 4;
       }},
      {"ldd", "< n", [](Gemm& g) { g.ldd = 3; }},
      {"stride_a", "negative", [](Gemm& g) { g.stride_a = -1; }},
      {"stride_b", "negative", [](Gemm& g) { g.stride_b = -1; }},
      {"stride_d", "negative", [](Gemm& g) { g.stride_d = -1; }},
      {"stride_d", "zero with two entries writing the same D", [](Gemm& g) { g.batch = 2; }},
  };
  for (const Bad& b : bad) {
    Gemm g = valid_gemm();
    b.change(g);
    try {
      cuda::check_gemm(g);
      ADD_FAILURE() << "accepted " << b.field << ": " << b.why;
    } catch (const std::invalid_argument& e) {
      const std::string prefix = std::string("dytrain::cuda::gemm: ") + b.field + " ";
      EXPECT_EQ(std::string(e.what()).rfind(prefix, 0), 0u)
          << "expected the message to start with '" << prefix << "': " << e.what();
    }
  }
}

TEST(CudaGemmArguments, CheckGemmAcceptsValidProblems) {
  EXPECT_NO_THROW(cuda::check_gemm(valid_gemm()));
  Gemm t = valid_gemm();
  t.trans_a = t.trans_b = true;
  t.lda = 3;  // A stored (k, m)
  t.ldb = 5;  // B stored (n, k)
  EXPECT_NO_THROW(cuda::check_gemm(t));
  Gemm unread_c = valid_gemm();
  unread_c.c = reinterpret_cast<const void*>(uintptr_t{0x4001});  // misaligned but not read: beta == 0
  EXPECT_NO_THROW(cuda::check_gemm(unread_c));
  Gemm batched = valid_gemm();
  batched.batch = 3;
  batched.stride_a = 0;  // broadcast A
  batched.stride_b = 20;
  batched.stride_d = 4;  // entries interleaved row by row, as with per-head views of a (T, H * hd) tensor
  batched.ldd = 12;
  EXPECT_NO_THROW(cuda::check_gemm(batched));
}

// --- the column-major mapping (CPU) -------------------------------------------------------------------------------

// Stand-in address regions of the four buffers, far enough apart to tell which buffer a pointer is in.
constexpr uintptr_t kRegion = uintptr_t{1} << 24;
constexpr uintptr_t kFakeA = 1 * kRegion, kFakeB = 2 * kRegion, kFakeC = 3 * kRegion, kFakeD = 4 * kRegion;

const std::vector<float>& buffer_at(const Buffers& h, const void* p) {
  const uintptr_t region = reinterpret_cast<uintptr_t>(p) / kRegion * kRegion;
  if (region == h.base_a) return h.a;
  if (region == h.base_b) return h.b;
  if (region == h.base_c) return h.c;
  return h.d;
}

int64_t offset_of(const void* p, int64_t bytes) {
  return static_cast<int64_t>(reinterpret_cast<uintptr_t>(p) % kRegion / static_cast<uintptr_t>(bytes));
}

// The D buffer after cuBLASLt's column-major product as its documentation defines it, on the problem lt_problem
// produced: D (m, n) = alpha op(A) op(B) + beta C, element (i, j) of a stored matrix at i + j * ld, op(X)(i, j) =
// X(j, i) when transposed. Buffers are found from the pointers alone, not from the Gemm.
std::vector<double> column_major_product(const cuda::detail::LtProblem& p, const Gemm& g, const Buffers& h) {
  const int64_t d_bytes = element_bytes(g.d_type);
  std::vector<double> image(h.d.begin(), h.d.end());
  EXPECT_EQ(p.a.transposed ? p.a.cols : p.a.rows, p.m) << "op(A) rows";
  EXPECT_EQ(p.a.transposed ? p.a.rows : p.a.cols, p.k) << "op(A) columns";
  EXPECT_EQ(p.b.transposed ? p.b.cols : p.b.rows, p.k) << "op(B) rows";
  EXPECT_EQ(p.b.transposed ? p.b.rows : p.b.cols, p.n) << "op(B) columns";
  EXPECT_EQ(p.d.rows, p.m);
  EXPECT_EQ(p.d.cols, p.n);
  EXPECT_FALSE(p.d.transposed);
  for (const cuda::detail::LtMatrix* x : {&p.a, &p.b, &p.c, &p.d}) {
    EXPECT_GE(x->ld, x->rows) << "cuBLASLt needs ld >= rows";
  }
  EXPECT_EQ(p.c.ld, p.d.ld) << "C has D's layout";
  EXPECT_EQ(p.c.stride, p.d.stride) << "C has D's layout";
  const std::vector<float>& a = buffer_at(h, p.a.ptr);
  const std::vector<float>& b = buffer_at(h, p.b.ptr);
  const std::vector<float>& c = buffer_at(h, p.c.ptr);
  const int64_t oa = offset_of(p.a.ptr, 2), ob = offset_of(p.b.ptr, 2);
  const int64_t oc = offset_of(p.c.ptr, d_bytes), od = offset_of(p.d.ptr, d_bytes);
  for (int64_t bt = 0; bt < p.batch; ++bt) {
    for (int64_t i = 0; i < p.m; ++i) {
      for (int64_t j = 0; j < p.n; ++j) {
        double sum = 0.0;
        for (int64_t l = 0; l < p.k; ++l) {
          const double x = a[oa + bt * p.a.stride + (p.a.transposed ? l + i * p.a.ld : i + l * p.a.ld)];
          const double y = b[ob + bt * p.b.stride + (p.b.transposed ? j + l * p.b.ld : l + j * p.b.ld)];
          sum += y * x;  // the row-major loop's a * b, exact in double either way (bf16 products)
        }
        const double cv = g.beta != 0.0f ? c[oc + bt * p.c.stride + i + j * p.c.ld] : 0.0;
        image[od + bt * p.d.stride + i + j * p.d.ld] = g.alpha * sum + g.beta * cv;
      }
    }
  }
  return image;
}

TEST(CudaGemmMapping, ColumnMajorProblemComputesTheRowMajorProduct) {
  for (const Case& c : gemm_cases()) {
    if (c.m * c.n * c.k > 100000) continue;  // the larger shapes add nothing to a check of indices
    SCOPED_TRACE(case_name(c));
    const Problem pr = make_problem(c, kFakeA, kFakeB, kFakeC, kFakeD);
    const cuda::detail::LtProblem p = cuda::detail::lt_problem(pr.g);
    const Expected want = row_major_product(pr.g, pr.h);
    const std::vector<double> got = column_major_product(p, pr.g, pr.h);
    ASSERT_EQ(got.size(), want.value.size());
    int failures = 0;
    for (size_t i = 0; i < got.size() && failures < 5; ++i) {
      const bool same = got[i] == want.value[i] || (std::isnan(got[i]) && std::isnan(want.value[i]));
      if (!same) {
        ADD_FAILURE() << "D[" << i << "]: column-major " << got[i] << ", row-major " << want.value[i];
        ++failures;
      }
    }
    if (pr.g.beta == 0.0f) {
      EXPECT_EQ(p.c.ptr, p.d.ptr) << "C is not read, D stands in for it";
    }
  }
}

TEST(CudaGemmMapping, AlignmentsAreThoseOfTheRightPointers) {
  Gemm g = valid_gemm();
  g.a = reinterpret_cast<const bf16*>(uintptr_t{0x1002});
  g.b = reinterpret_cast<const bf16*>(uintptr_t{0x2004});
  g.d = reinterpret_cast<void*>(uintptr_t{0x3008});
  g.c = reinterpret_cast<const void*>(uintptr_t{0x4010});
  g.beta = 1.0f;
  cuda::detail::LtProblem p = cuda::detail::lt_problem(g);
  EXPECT_EQ(p.b.alignment_bytes, 2u) << "cuBLASLt's B is our A";
  EXPECT_EQ(p.a.alignment_bytes, 4u) << "cuBLASLt's A is our B";
  EXPECT_EQ(p.d.alignment_bytes, 8u);
  EXPECT_EQ(p.c.alignment_bytes, 16u);
  g.beta = 0.0f;
  p = cuda::detail::lt_problem(g);
  EXPECT_EQ(p.c.ptr, g.d);
  EXPECT_EQ(p.c.alignment_bytes, 8u) << "an unread C is D";
}

TEST(CudaGemmMapping, AlignmentBytes) {
  using cuda::detail::alignment_bytes;
  const auto at = [](uintptr_t a) { return reinterpret_cast<const void*>(a); };
  EXPECT_EQ(alignment_bytes(at(0x10000), 0, 1), 256u);  // capped at cuBLASLt's default requirement
  EXPECT_EQ(alignment_bytes(at(0x10080), 0, 1), 128u);
  EXPECT_EQ(alignment_bytes(at(0x10010), 0, 1), 16u);
  EXPECT_EQ(alignment_bytes(at(0x10002), 0, 1), 2u);
  EXPECT_EQ(alignment_bytes(nullptr, 0, 1), 256u);
  EXPECT_EQ(alignment_bytes(at(0x10000), 6, 1), 256u);  // one entry: the stride never moves the pointer
  EXPECT_EQ(alignment_bytes(at(0x10000), 6, 2), 2u);    // the second entry starts 6 bytes on
  EXPECT_EQ(alignment_bytes(at(0x10000), 96, 3), 32u);
  EXPECT_EQ(alignment_bytes(at(0x10004), 4096, 3), 4u);
}

// --- gemm on the GPU against the double loop ----------------------------------------------------------------------

// Device copies of a case's buffers; D and C in D's type.
struct DeviceProblem {
  DeviceBf16 a, b;
  DeviceBf16 c16, d16;
  DeviceBuffer<float> c32, d32;
  explicit DeviceProblem(const Buffers& h, DType t)
      : a(h.a),
        b(h.b),
        c16(t == DType::bf16 ? h.c : std::vector<float>()),
        d16(t == DType::bf16 ? h.d : std::vector<float>()),
        c32(t == DType::f32 ? h.c : std::vector<float>()),
        d32(t == DType::f32 ? h.d : std::vector<float>()) {}
  uintptr_t c_base(DType t) const {
    return t == DType::f32 ? reinterpret_cast<uintptr_t>(c32.get()) : reinterpret_cast<uintptr_t>(c16.get());
  }
  uintptr_t d_base(DType t) const {
    return t == DType::f32 ? reinterpret_cast<uintptr_t>(d32.get()) : reinterpret_cast<uintptr_t>(d16.get());
  }
  std::vector<float> download_d(DType t) const { return t == DType::f32 ? d32.download() : d16.download(); }
};

using CudaGemm = CudaTest;

TEST_F(CudaGemm, MatchesDoubleLoop) {
  cuda::Blas blas(nullptr);
  for (const Case& c : gemm_cases()) {
    SCOPED_TRACE(case_name(c));
    // The values first (on stand-in addresses), then the device buffers holding them, then the same problem (its
    // values are seeded) on the device addresses.
    const DeviceProblem dev(make_problem(c, kFakeA, kFakeB, kFakeC, kFakeD).h, c.d_type);
    const Problem pr =
        make_problem(c, reinterpret_cast<uintptr_t>(dev.a.get()), reinterpret_cast<uintptr_t>(dev.b.get()),
                     dev.c_base(c.d_type), dev.d_base(c.d_type));
    cuda::gemm(blas, pr.g);
    DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());

    const Expected want = row_major_product(pr.g, pr.h);
    const std::vector<float> got = dev.download_d(c.d_type);
    ASSERT_EQ(got.size(), want.value.size());
    int failures = 0;
    for (size_t i = 0; i < got.size() && failures < 5; ++i) {
      if (!want.written[i]) {
        const bool untouched = got[i] == pr.h.d[i] || (std::isnan(got[i]) && std::isnan(pr.h.d[i]));
        if (!untouched) {
          ADD_FAILURE() << "D[" << i << "] is padding and was changed from " << pr.h.d[i] << " to " << got[i];
          ++failures;
        }
        continue;
      }
      const double s = fp32_slack(c.k, want.scale[i]);
      const double tol = c.d_type == DType::f32 ? s : bf16_tolerance(want.value[i], s);
      const double err = std::fabs(static_cast<double>(got[i]) - want.value[i]);
      if (!(err <= tol)) {
        ADD_FAILURE() << "D[" << i << "]: got " << got[i] << ", reference " << want.value[i] << ", |error| " << err
                      << " > tolerance " << tol;
        ++failures;
      }
    }
  }
}

// --- the linear layers against the CPU ops ------------------------------------------------------------------------

struct LinearShape {
  int64_t M, K, N;
};

void PrintTo(const LinearShape& s, std::ostream* os) { *os << "M=" << s.M << " K=" << s.K << " N=" << s.N; }

std::string linear_name(const testing::TestParamInfo<LinearShape>& info) {
  return "M" + std::to_string(info.param.M) + "_K" + std::to_string(info.param.K) + "_N" + std::to_string(info.param.N);
}

std::vector<float> abs_of(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = std::fabs(v[i]);
  return r;
}

struct LinearInputs {
  int64_t M, K, N;
  std::vector<float> inp, weight, residual, dout, dinp0, dweight0;
  explicit LinearInputs(const LinearShape& s)
      : M(s.M),
        K(s.K),
        N(s.N),
        inp(random_bf16_values(static_cast<size_t>(M * K), 1, -1.0f, 1.0f)),
        weight(random_bf16_values(static_cast<size_t>(N * K), 2, -1.0f, 1.0f)),
        residual(random_bf16_values(static_cast<size_t>(M * N), 3, -2.0f, 2.0f)),
        dout(random_bf16_values(static_cast<size_t>(M * N), 4, -1.0f, 1.0f)),
        dinp0(random_bf16_values(static_cast<size_t>(M * K), 5, -1.0f, 1.0f)),
        dweight0(random_floats(static_cast<size_t>(N * K), 6, -1.0f, 1.0f)) {}
};

// bf16 outputs against the CPU op: distance 2 s (both sides accumulate in fp32), s over `terms` products with
// scale[i] = sum |a b| + |added[i]|.
void expect_bf16_vs_cpu(const std::vector<float>& got, const std::vector<float>& want,
                        const std::vector<float>& abs_dot, const std::vector<float>* added, int64_t terms,
                        const std::string& name) {
  std::vector<double> tol(want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const double scale = abs_dot[i] + (added != nullptr ? std::fabs((*added)[i]) : 0.0);
    tol[i] = bf16_tolerance(want[i], 2.0 * fp32_slack(terms, scale));
  }
  expect_each_near(got, want, tol, name);
}

class CudaMatmul : public CudaTest, public testing::WithParamInterface<LinearShape> {};

TEST_P(CudaMatmul, ForwardMatchesCpuOp) {
  const LinearInputs in(GetParam());
  const int64_t M = in.M, K = in.K, N = in.N;
  std::vector<float> ref(static_cast<size_t>(M * N)), abs_dot(ref.size());
  cpu::matmul_forward(ref.data(), in.inp.data(), in.weight.data(), M, K, N);
  cpu::matmul_forward(abs_dot.data(), abs_of(in.inp).data(), abs_of(in.weight).data(), M, K, N);
  std::vector<float> ref_residual(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) ref_residual[i] = ref[i] + in.residual[i];  // one fp32 rounding, as s allows

  cuda::Blas blas(nullptr);
  const DeviceBf16 inp(in.inp), weight(in.weight), residual(in.residual);
  DeviceBf16 out(std::vector<float>(ref.size(), std::nanf("")));  // written without being read
  cuda::matmul_forward(blas, out.get(), inp.get(), weight.get(), nullptr, M, K, N);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  expect_bf16_vs_cpu(out.download(), ref, abs_dot, nullptr, K, "out");

  cuda::matmul_forward(blas, out.get(), inp.get(), weight.get(), residual.get(), M, K, N);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  expect_bf16_vs_cpu(out.download(), ref_residual, abs_dot, &in.residual, K, "out with residual");
  EXPECT_EQ(residual.download(), in.residual) << "the residual input was changed";

  DeviceBf16 in_place(in.residual);
  cuda::matmul_forward(blas, in_place.get(), inp.get(), weight.get(), in_place.get(), M, K, N);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  expect_bf16_vs_cpu(in_place.download(), ref_residual, abs_dot, &in.residual, K, "out == residual");
}

TEST_P(CudaMatmul, BackwardMatchesCpuOp) {
  const LinearInputs in(GetParam());
  const int64_t M = in.M, K = in.K, N = in.N;
  // Reference: dinp written (from zero) and accumulated (onto dinp0); dweight accumulated onto dweight0.
  std::vector<float> dinp_ref(static_cast<size_t>(M * K), 0.0f), dinp_acc_ref = in.dinp0, dweight_ref = in.dweight0;
  cpu::matmul_backward(dinp_ref.data(), dweight_ref.data(), in.dout.data(), in.inp.data(), in.weight.data(), M, K, N);
  cpu::matmul_backward(dinp_acc_ref.data(), nullptr, in.dout.data(), in.inp.data(), in.weight.data(), M, K, N);
  std::vector<float> abs_dinp(dinp_ref.size(), 0.0f), abs_dweight(dweight_ref.size(), 0.0f);
  cpu::matmul_backward(abs_dinp.data(), abs_dweight.data(), abs_of(in.dout).data(), abs_of(in.inp).data(),
                       abs_of(in.weight).data(), M, K, N);

  cuda::Blas blas(nullptr);
  const DeviceBf16 dout(in.dout), inp(in.inp), weight(in.weight);
  DeviceBf16 dinp(std::vector<float>(dinp_ref.size(), std::nanf("")));  // written without being read
  DeviceBuffer<float> dweight(in.dweight0);
  cuda::matmul_backward(blas, dinp.get(), dweight.get(), dout.get(), inp.get(), weight.get(), M, K, N);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  expect_bf16_vs_cpu(dinp.download(), dinp_ref, abs_dinp, nullptr, N, "dinp");
  std::vector<double> dweight_tol(dweight_ref.size());
  for (size_t i = 0; i < dweight_tol.size(); ++i) {
    dweight_tol[i] = 2.0 * fp32_slack(M, abs_dweight[i] + std::fabs(in.dweight0[i]));
  }
  expect_each_near(dweight.download(), dweight_ref, dweight_tol, "dweight (+= onto a nonzero start)");

  DeviceBf16 dinp_acc(in.dinp0);
  cuda::matmul_backward(blas, dinp_acc.get(), nullptr, dout.get(), nullptr, weight.get(), M, K, N,
                        /*accumulate_dinp=*/true);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  expect_bf16_vs_cpu(dinp_acc.download(), dinp_acc_ref, abs_dinp, &in.dinp0, N, "dinp (accumulated)");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaMatmul,
                         testing::Values(LinearShape{1, 8, 8}, LinearShape{1, 1, 1}, LinearShape{7, 13, 5},
                                         LinearShape{64, 768, 2304}, LinearShape{300, 96, 1000},
                                         LinearShape{517, 1031, 771}),
                         linear_name);

using CudaMatmulCases = CudaTest;

// Either backward output may be skipped (nullptr), and with it the input only it reads; the other comes out right.
TEST_F(CudaMatmulCases, BackwardSkipsANullOutput) {
  const LinearInputs in(LinearShape{33, 40, 24});
  const int64_t M = in.M, K = in.K, N = in.N;
  std::vector<float> dinp_ref(static_cast<size_t>(M * K), 0.0f), dweight_ref = in.dweight0;
  cpu::matmul_backward(dinp_ref.data(), dweight_ref.data(), in.dout.data(), in.inp.data(), in.weight.data(), M, K, N);
  std::vector<float> abs_dinp(dinp_ref.size(), 0.0f), abs_dweight(dweight_ref.size(), 0.0f);
  cpu::matmul_backward(abs_dinp.data(), abs_dweight.data(), abs_of(in.dout).data(), abs_of(in.inp).data(),
                       abs_of(in.weight).data(), M, K, N);
  cuda::Blas blas(nullptr);
  const DeviceBf16 dout(in.dout), inp(in.inp), weight(in.weight);
  DeviceBf16 dinp(in.dinp0);
  DeviceBuffer<float> dweight(in.dweight0);
  // weight is only needed for dinp, inp only for dweight: null ones are fine when their product is skipped.
  cuda::matmul_backward(blas, nullptr, dweight.get(), dout.get(), inp.get(), nullptr, M, K, N);
  cuda::matmul_backward(blas, dinp.get(), nullptr, dout.get(), nullptr, weight.get(), M, K, N);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  expect_bf16_vs_cpu(dinp.download(), dinp_ref, abs_dinp, nullptr, N, "dinp");
  std::vector<double> tol(dweight_ref.size());
  for (size_t i = 0; i < tol.size(); ++i) tol[i] = 2.0 * fp32_slack(M, abs_dweight[i] + std::fabs(in.dweight0[i]));
  expect_each_near(dweight.download(), dweight_ref, tol, "dweight");
}

// A Blas without workspace gets algorithms that need none.
TEST_F(CudaMatmulCases, WorksWithoutWorkspace) {
  const LinearInputs in(LinearShape{64, 768, 2304});
  std::vector<float> ref(static_cast<size_t>(in.M * in.N)), abs_dot(ref.size());
  cpu::matmul_forward(ref.data(), in.inp.data(), in.weight.data(), in.M, in.K, in.N);
  cpu::matmul_forward(abs_dot.data(), abs_of(in.inp).data(), abs_of(in.weight).data(), in.M, in.K, in.N);
  cuda::Blas blas(nullptr, 0);
  const DeviceBf16 inp(in.inp), weight(in.weight);
  DeviceBf16 out(std::vector<float>(ref.size(), 0.0f));
  cuda::matmul_forward(blas, out.get(), inp.get(), weight.get(), nullptr, in.M, in.K, in.N);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  expect_bf16_vs_cpu(out.download(), ref, abs_dot, nullptr, in.K, "out");
}

// Forward and backward at a training size, twice with one Blas and once with a fresh one: every bit the same.
TEST_F(CudaMatmulCases, RerunsAreBitIdentical) {
  const LinearInputs in(LinearShape{1024, 768, 2304});
  const DeviceBf16 inp(in.inp), weight(in.weight), residual(in.residual), dout(in.dout);
  cuda::Blas blas(nullptr);
  const auto run = [&](cuda::Blas& b) {
    DeviceBf16 out(std::vector<float>(in.residual.size(), 0.0f)), dinp(in.dinp0);
    DeviceBuffer<float> dweight(in.dweight0);
    cuda::matmul_forward(b, out.get(), inp.get(), weight.get(), residual.get(), in.M, in.K, in.N);
    cuda::matmul_backward(b, dinp.get(), dweight.get(), dout.get(), inp.get(), weight.get(), in.M, in.K, in.N, true);
    DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
    return std::make_tuple(out.download_bits(), dinp.download_bits(), dweight.download());
  };
  const auto first = run(blas);
  EXPECT_TRUE(first == run(blas)) << "a rerun with the same Blas differs";
  cuda::Blas fresh(nullptr);
  EXPECT_TRUE(first == run(fresh)) << "a rerun with a new Blas differs";
}

TEST_F(CudaMatmulCases, BadArgumentsThrowBeforeAnyWork) {
  cuda::Blas blas(nullptr);
  const LinearInputs in(LinearShape{4, 8, 8});
  const DeviceBf16 x(in.inp), w(in.weight), dout(in.dout);
  DeviceBf16 out(in.residual), dinp(in.dinp0);
  DeviceBuffer<float> dweight(in.dweight0);
  const auto expect_invalid = [](const std::function<void()>& call, const std::string& op, const std::string& name) {
    try {
      call();
      ADD_FAILURE() << op << " accepted a bad " << name;
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(op), std::string::npos) << what;
      EXPECT_NE(what.find(name), std::string::npos) << what;
    }
  };
  expect_invalid([&] { cuda::matmul_forward(blas, out.get(), nullptr, w.get(), nullptr, 4, 8, 8); }, "matmul_forward",
                 "inp");
  expect_invalid([&] { cuda::matmul_forward(blas, out.get(), x.get(), w.get(), nullptr, 4, 0, 8); }, "matmul_forward",
                 "K=0");
  const auto* odd = reinterpret_cast<const bf16*>(uintptr_t{1});
  expect_invalid([&] { cuda::matmul_forward(blas, out.get(), x.get(), w.get(), odd, 4, 8, 8); }, "matmul_forward",
                 "residual");
  // inp is bad, and dinp's product would come first: nothing may be queued.
  expect_invalid([&] { cuda::matmul_backward(blas, dinp.get(), dweight.get(), dout.get(), nullptr, w.get(), 4, 8, 8); },
                 "matmul_backward", "inp");
  expect_invalid([&] { cuda::matmul_backward(blas, dinp.get(), nullptr, dout.get(), x.get(), nullptr, 4, 8, 8); },
                 "matmul_backward", "weight");
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(out.download(), in.residual) << "out changed by a rejected call";
  EXPECT_EQ(dinp.download(), in.dinp0) << "dinp changed by a rejected call";
  EXPECT_EQ(dweight.download(), in.dweight0) << "dweight changed by a rejected call";
}

}  // namespace
}  // namespace dytrain::test
