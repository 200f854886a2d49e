#include "structured/number_grammar.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

namespace kiln::structured {
namespace {

constexpr int kMaxIntDigits = 15;  // unbounded integers: at most 15 digits (exact in doubles)
constexpr int kMaxFracDigits = 16;

ExprPtr Digits(int lo, int hi) { return Repeat(ByteRange('0', '9'), lo, hi); }

std::string PowTenMinusOne(int len) { return std::string(len, '9'); }

// Decimal strings of equal length, lo <= hi, every value in between.
ExprPtr SameLengthRange(const std::string& lo, const std::string& hi) {
  const size_t n = lo.size();
  if (n == 1) return ByteRange(lo[0], hi[0]);
  std::string lo_rest = lo.substr(1), hi_rest = hi.substr(1);
  if (lo[0] == hi[0]) return Seq({Literal(lo.substr(0, 1)), SameLengthRange(lo_rest, hi_rest)});
  bool lo_zeros = lo_rest.find_first_not_of('0') == std::string::npos;
  bool hi_nines = hi_rest.find_first_not_of('9') == std::string::npos;
  std::vector<ExprPtr> alts;
  char first_full = lo_zeros ? lo[0] : static_cast<char>(lo[0] + 1);
  char last_full = hi_nines ? hi[0] : static_cast<char>(hi[0] - 1);
  if (!lo_zeros) {
    alts.push_back(
        Seq({Literal(lo.substr(0, 1)), SameLengthRange(lo_rest, std::string(n - 1, '9'))}));
  }
  if (first_full <= last_full) {
    alts.push_back(Seq({ByteRange(first_full, last_full), Digits(n - 1, n - 1)}));
  }
  if (!hi_nines) {
    alts.push_back(
        Seq({Literal(hi.substr(0, 1)), SameLengthRange(std::string(n - 1, '0'), hi_rest)}));
  }
  return Alt(std::move(alts));
}

// Non-negative integers in [a, b] (b < 0 → unbounded, capped at kMaxIntDigits digits), no
// leading zeros.
ExprPtr MagnitudeRange(int64_t a, int64_t b) {
  if (a < 0) a = 0;
  std::string as = std::to_string(a);
  int max_len = kMaxIntDigits;
  if (b >= 0) {
    if (b < a) return Nothing();
    max_len = static_cast<int>(std::to_string(b).size());
  }
  std::vector<ExprPtr> alts;
  for (int len = static_cast<int>(as.size()); len <= max_len; ++len) {
    std::string lo = len == static_cast<int>(as.size()) ? as : "1" + std::string(len - 1, '0');
    std::string hi = PowTenMinusOne(len);
    if (b >= 0 && len == max_len) hi = std::to_string(b);
    if (len == 1 && lo == "0") {
      alts.push_back(SameLengthRange(lo, hi));
    } else {
      alts.push_back(SameLengthRange(lo, hi));
    }
  }
  return Alt(std::move(alts));
}

// Integers in [lo, hi] (nullopt = open).
ExprPtr IntegerRange(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  if (lo && hi && *lo > *hi) return Nothing();
  std::vector<ExprPtr> alts;
  if (!hi || *hi >= 0) {
    alts.push_back(MagnitudeRange(lo ? std::max<int64_t>(*lo, 0) : 0, hi ? *hi : -1));
  }
  if (!lo || *lo < 0) {
    int64_t mag_lo = hi ? std::max<int64_t>(1, -std::min<int64_t>(*hi, -1)) : 1;
    int64_t mag_hi = lo ? -*lo : -1;
    alts.push_back(Seq({Literal("-"), MagnitudeRange(mag_lo, mag_hi)}));
  }
  return Alt(std::move(alts));
}

ExprPtr Fraction() {
  // '.' then digits ending in a non-zero digit: the value lies strictly inside (I, I+1).
  return Seq({Literal("."), Digits(0, kMaxFracDigits - 1), ByteRange('1', '9')});
}

std::optional<int64_t> ClampBound(std::optional<double> v) {
  if (!v || !std::isfinite(*v) || std::fabs(*v) >= static_cast<double>(kNumberBoundLimit)) {
    return std::nullopt;
  }
  return static_cast<int64_t>(*v);
}

}  // namespace

ExprPtr NumberExpr(const NumberBounds& b, bool integer) {
  // Integers in range.
  std::optional<double> ilo, ihi;
  if (b.lo) ilo = b.lo_exclusive ? std::floor(*b.lo) + 1 : std::ceil(*b.lo);
  if (b.hi) ihi = b.hi_exclusive ? std::ceil(*b.hi) - 1 : std::floor(*b.hi);
  ExprPtr ints = IntegerRange(ClampBound(ilo), ClampBound(ihi));
  if (integer) return ints;
  if (!b.lo && !b.hi) {
    return Seq({IntegerRange(std::nullopt, std::nullopt),
                Opt(Seq({Literal("."), Digits(1, kMaxFracDigits)})),
                Opt(Seq({Alt({Literal("e"), Literal("E")}), Opt(Alt({Literal("+"), Literal("-")})),
                         Digits(1, 2)}))});
  }
  std::vector<ExprPtr> alts{ints};
  // Positive decimals I.F with I in [max(0, ceil(lo)), floor(hi) - 1].
  std::optional<double> plo =
      b.lo ? std::optional<double>(std::max(0.0, std::ceil(*b.lo))) : std::optional<double>(0.0);
  std::optional<double> phi;
  if (b.hi) phi = std::floor(*b.hi) - 1;
  if (!phi || *phi >= *plo) {
    std::optional<int64_t> h = ClampBound(phi);
    alts.push_back(Seq({MagnitudeRange(static_cast<int64_t>(*plo), h ? *h : -1), Fraction()}));
  }
  // Negative decimals -I.F with I in [max(0, ceil(-hi)), floor(-lo) - 1].
  double nlo = b.hi ? std::max(0.0, std::ceil(-*b.hi)) : 0.0;
  std::optional<double> nhi;
  if (b.lo) nhi = std::floor(-*b.lo) - 1;
  if (!nhi || *nhi >= nlo) {
    std::optional<int64_t> h = ClampBound(nhi);
    alts.push_back(
        Seq({Literal("-"), MagnitudeRange(static_cast<int64_t>(nlo), h ? *h : -1), Fraction()}));
  }
  return Alt(std::move(alts));
}

}  // namespace kiln::structured
