// Oracle for hgq.quantizers.fixed_point.quantize_np: the real ap_fixed / ap_ufixed casts.
//
// Built and driven by tests/test_ap_fixed_oracle.py (g++ -std=c++17 -O1 -I<hls4ml ap_types>).
// The formats are template parameters, so the test passes its table on the command line:
//   -DORACLE_FORMATS='X(0, 4, 2, 1) X(1, 3, -1, 0) ...'   entries X(index, W, I, signed)
// (the test splits its table over several executables so that they compile in parallel).
//
// Protocol (native-endian binary, stdin -> stdout), repeated until end of input:
//   in:  int32 index, int32 n, n float64 values
//   out: for each rounding mode Q in the order TRN, RND, RND_CONV, TRN_ZERO, RND_ZERO, RND_INF,
//        RND_MIN_INF and, within it, each overflow mode O in the order WRAP, SAT, SAT_SYM:
//        n uint64, the W raw bits of the value cast to ap_[u]fixed<W, I, AP_Q, AP_O> (bits W-1..0)
//
// Each value is first converted to src_t (ap_fixed<64, 32>, AP_TRN, AP_WRAP); the test only sends
// values on src_t's 2^-32 grid with |x| < 2^31, so that step is exact and the cast under test sees
// the exact real number. The cast src_t -> target is the ap_fixed assignment whose rounding and
// overflow handling is the ground truth.

#include <ap_fixed.h>

#include <cstdint>
#include <cstdio>
#include <type_traits>
#include <vector>

#ifndef ORACLE_FORMATS
#error "define ORACLE_FORMATS as a list of X(index, W, I, signed) entries"
#endif

typedef ap_fixed<64, 32> src_t;

template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O>
using target_t = typename std::conditional<S, ap_fixed<W, I, Q, O>, ap_ufixed<W, I, Q, O>>::type;

template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O>
static void cast_all(const std::vector<src_t>& xs, std::vector<uint64_t>& out) {
  for (const src_t& x : xs) {
    target_t<W, I, S, Q, O> y = x;  // the cast under test
    out.push_back(y.range(W - 1, 0).to_uint64());
  }
}

template <int W, int I, bool S, ap_q_mode Q>
static void cast_overflow_modes(const std::vector<src_t>& xs, std::vector<uint64_t>& out) {
  cast_all<W, I, S, Q, AP_WRAP>(xs, out);
  cast_all<W, I, S, Q, AP_SAT>(xs, out);
  cast_all<W, I, S, Q, AP_SAT_SYM>(xs, out);
}

template <int W, int I, bool S>
static void cast_all_modes(const std::vector<src_t>& xs, std::vector<uint64_t>& out) {
  static_assert(W >= 1 && W <= 64, "W must be in [1, 64]");
  cast_overflow_modes<W, I, S, AP_TRN>(xs, out);
  cast_overflow_modes<W, I, S, AP_RND>(xs, out);
  cast_overflow_modes<W, I, S, AP_RND_CONV>(xs, out);
  cast_overflow_modes<W, I, S, AP_TRN_ZERO>(xs, out);
  cast_overflow_modes<W, I, S, AP_RND_ZERO>(xs, out);
  cast_overflow_modes<W, I, S, AP_RND_INF>(xs, out);
  cast_overflow_modes<W, I, S, AP_RND_MIN_INF>(xs, out);
}

static bool dispatch(int32_t index, const std::vector<src_t>& xs, std::vector<uint64_t>& out) {
#define X(IDX, W, I, S)                      \
  if (index == (IDX)) {                      \
    cast_all_modes<W, I, (S) != 0>(xs, out); \
    return true;                             \
  }
  ORACLE_FORMATS
#undef X
  return false;
}

int main() {
  int32_t header[2];
  std::vector<double> raw;
  std::vector<src_t> xs;
  std::vector<uint64_t> out;
  while (std::fread(header, sizeof(int32_t), 2, stdin) == 2) {
    const int32_t index = header[0], n = header[1];
    if (n < 0) {
      std::fprintf(stderr, "ap_fixed_oracle: negative count %d\n", n);
      return 2;
    }
    raw.resize(n);
    if (std::fread(raw.data(), sizeof(double), n, stdin) != static_cast<size_t>(n)) {
      std::fprintf(stderr, "ap_fixed_oracle: truncated input for format %d\n", index);
      return 2;
    }
    xs.clear();
    for (double d : raw) xs.push_back(src_t(d));
    out.clear();
    if (!dispatch(index, xs, out)) {
      std::fprintf(stderr, "ap_fixed_oracle: format %d is not compiled into this executable\n", index);
      return 2;
    }
    if (std::fwrite(out.data(), sizeof(uint64_t), out.size(), stdout) != out.size()) return 3;
  }
  return 0;
}
