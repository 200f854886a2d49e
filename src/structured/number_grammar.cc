#include "structured/number_grammar.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace kiln::structured {
namespace {

std::string FormatNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

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

ExprPtr Fraction(int max_digits) {
  // '.' then digits ending in a non-zero digit: the value lies strictly inside (I, I+1).
  return Seq({Literal("."), Digits(0, max_digits - 1), ByteRange('1', '9')});
}

// A non-negative decimal as its integer part and fraction digits (no trailing zeros): the
// shortest text that reads back as the same double, so a bound of 0.1 is "0" and "1".
struct Decimal {
  int64_t whole = 0;
  std::string frac;
};

Decimal SplitDecimal(double m) {
  char buf[512];
  const auto r = std::to_chars(buf, buf + sizeof(buf), m, std::chars_format::fixed);
  const std::string text(buf, r.ec == std::errc() ? r.ptr : buf);
  Decimal d;
  const size_t dot = text.find('.');
  d.whole = std::stoll(text.substr(0, dot));
  if (dot != std::string::npos) d.frac = text.substr(dot + 1);
  while (!d.frac.empty() && d.frac.back() == '0') d.frac.pop_back();
  return d;
}

// Fraction digits F (what follows '.', 1 to max_digits digits) with lo <= 0.F <= hi as decimal
// fractions (a null bound is open; exclusive bounds compare strictly). Digit by digit: while F's
// prefix equals a bound's, the next digit is held to that bound's digit; once it differs, the
// rest is free. Linear in max_digits.
class FractionRange {
 public:
  FractionRange(const std::string* lo, bool lo_excl, const std::string* hi, bool hi_excl,
                int max_digits)
      : lo_(lo), hi_(hi), lo_excl_(lo_excl), hi_excl_(hi_excl), max_digits_(max_digits) {}

  ExprPtr Build() const { return From(0, lo_ != nullptr, hi_ != nullptr); }

 private:
  static char DigitAt(const std::string& s, int i) {
    return i < static_cast<int>(s.size()) ? s[i] : '0';
  }
  static bool RestZero(const std::string& s, int i) {
    return s.find_first_not_of('0', std::min<size_t>(i, s.size())) == std::string::npos;
  }
  // F[i..] given that F[0..i) equals lo's digits (tight_lo) and/or hi's (tight_hi).
  ExprPtr From(int i, bool tight_lo, bool tight_hi) const {
    // Past lo's last digit an inclusive lower bound holds whatever follows.
    if (tight_lo && !lo_excl_ && RestZero(*lo_, i)) tight_lo = false;
    const int left = max_digits_ - i;
    if (!tight_lo && !tight_hi) return Digits(i == 0 ? 1 : 0, left);
    std::vector<ExprPtr> alts;
    if (i > 0) {
      // F ends here: its remaining digits are zeros.
      bool ok = true;
      if (tight_lo) ok = ok && RestZero(*lo_, i) && !lo_excl_;
      if (tight_hi) ok = ok && (!RestZero(*hi_, i) || !hi_excl_);
      if (ok) alts.push_back(Empty());
    }
    if (left > 0) {
      const char dlo = tight_lo ? DigitAt(*lo_, i) : '0';
      const char dhi = tight_hi ? DigitAt(*hi_, i) : '9';
      if (dlo == dhi) {
        alts.push_back(Seq({Literal(std::string(1, dlo)), From(i + 1, tight_lo, tight_hi)}));
      } else if (dlo < dhi) {
        alts.push_back(Seq({Literal(std::string(1, dlo)), From(i + 1, tight_lo, false)}));
        if (dlo + 1 <= dhi - 1)
          alts.push_back(Seq({ByteRange(dlo + 1, dhi - 1), Digits(0, left - 1)}));
        alts.push_back(Seq({Literal(std::string(1, dhi)), From(i + 1, false, tight_hi)}));
      }
    }
    return Alt(std::move(alts));
  }

  const std::string* lo_;
  const std::string* hi_;
  bool lo_excl_, hi_excl_;
  int max_digits_;
};

// Decimals "I.F" (F: 1 to max_digits digits) whose value lies between the magnitudes a and z
// (z absent = open above).
ExprPtr DecimalMagnitudes(const Decimal& a, bool a_excl, const std::optional<Decimal>& z,
                          bool z_excl, int max_digits) {
  auto whole = [](int64_t v) { return Literal(std::to_string(v) + "."); };
  if (z && z->whole < a.whole) return Nothing();
  if (z && z->whole == a.whole) {
    return Seq(
        {whole(a.whole), FractionRange(&a.frac, a_excl, &z->frac, z_excl, max_digits).Build()});
  }
  std::vector<ExprPtr> alts;
  alts.push_back(
      Seq({whole(a.whole), FractionRange(&a.frac, a_excl, nullptr, false, max_digits).Build()}));
  if (!z || z->whole - 1 >= a.whole + 1) {
    alts.push_back(Seq(
        {MagnitudeRange(a.whole + 1, z ? z->whole - 1 : -1), Literal("."), Digits(1, max_digits)}));
  }
  if (z) {
    alts.push_back(Seq(
        {whole(z->whole), FractionRange(nullptr, false, &z->frac, z_excl, max_digits).Build()}));
  }
  return Alt(std::move(alts));
}

std::optional<int64_t> ClampBound(std::optional<double> v) {
  if (!v || !std::isfinite(*v) || std::fabs(*v) >= static_cast<double>(kNumberBoundLimit)) {
    return std::nullopt;
  }
  return static_cast<int64_t>(*v);
}

// `scaled` / 10^decimals as the shortest JSON number text ("-1.5", "20", "0.25").
std::string FixedDecimal(int64_t scaled, int decimals) {
  const bool neg = scaled < 0;
  std::string digits = std::to_string(neg ? -scaled : scaled);
  if (static_cast<int>(digits.size()) <= decimals) {
    digits.insert(0, decimals + 1 - digits.size(), '0');
  }
  std::string whole = digits.substr(0, digits.size() - decimals);
  std::string frac = digits.substr(digits.size() - decimals);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  std::string out = whole + (frac.empty() ? "" : "." + frac);
  return (neg && out != "0" ? "-" : "") + out;
}

}  // namespace

StatusOr<ExprPtr> MultipleOfExpr(const NumberBounds& b, double k, bool integer) {
  const std::string what = "multipleOf " + FormatNumber(k);
  // k = units / 10^decimals exactly (up to 9 decimals).
  int decimals = -1;
  int64_t units = 0;
  for (int d = 0; d <= 9; ++d) {
    const double scaled = k * std::pow(10.0, d);
    if (scaled < 9e15 && std::fabs(scaled - std::round(scaled)) <= 1e-9 * scaled) {
      decimals = d;
      units = static_cast<int64_t>(std::llround(scaled));
      break;
    }
  }
  if (decimals < 0 || units <= 0) {
    return Status::InvalidArgument(what + " is not supported (at most 9 decimals)");
  }
  if (units == 1) {
    // 1, 0.1, 0.01, ...: integers, or numbers with at most `decimals` decimals.
    return NumberExpr(b, integer || decimals == 0, integer ? 0 : decimals);
  }
  const double kd = static_cast<double>(units) / std::pow(10.0, decimals);
  auto inside = [&](double v) {
    return (!b.lo || v > *b.lo || (!b.lo_exclusive && v == *b.lo)) &&
           (!b.hi || v < *b.hi || (!b.hi_exclusive && v == *b.hi));
  };
  std::string zeros;
  for (int64_t u = units; decimals == 0 && u % 10 == 0; u /= 10) zeros += '0';
  if (decimals == 0 && units == static_cast<int64_t>(std::pow(10.0, zeros.size()))) {
    // 10, 100, 1000, ...: a quotient in range followed by the zeros, over any range.
    std::optional<int64_t> qlo, qhi;
    if (b.lo) qlo = static_cast<int64_t>(std::ceil(*b.lo / kd - 1e-9));
    if (b.hi) qhi = static_cast<int64_t>(std::floor(*b.hi / kd + 1e-9));
    if (qlo && !inside(static_cast<double>(*qlo) * kd)) ++*qlo;
    if (qhi && !inside(static_cast<double>(*qhi) * kd)) --*qhi;
    // At most kMaxIntDigits digits with the zeros (exact in doubles, as JSON parsers read them).
    const int64_t q_cap =
        static_cast<int64_t>(std::pow(10.0, kMaxIntDigits - static_cast<int>(zeros.size()))) - 1;
    if (!qhi || *qhi > q_cap) qhi = q_cap;
    if (!qlo || *qlo < -q_cap) qlo = -q_cap;
    std::vector<ExprPtr> alts;
    if ((!qlo || *qlo <= 0) && (!qhi || *qhi >= 0)) alts.push_back(Literal("0"));
    if (!qhi || *qhi >= 1) {
      alts.push_back(Seq(
          {MagnitudeRange(qlo ? std::max<int64_t>(*qlo, 1) : 1, qhi ? *qhi : -1), Literal(zeros)}));
    }
    if (!qlo || *qlo <= -1) {
      alts.push_back(Seq({Literal("-"),
                          MagnitudeRange(qhi ? std::max<int64_t>(-*qhi, 1) : 1, qlo ? -*qlo : -1),
                          Literal(zeros)}));
    }
    return Alt(std::move(alts));
  }
  const int64_t per_unit = static_cast<int64_t>(std::pow(10.0, decimals));
  if (decimals > 0 && per_unit % units == 0 && b.lo && *b.lo >= 0 && !integer) {
    // 0.5, 0.25, 0.2, ...: integers in range, I.f for I strictly inside with every fraction f
    // of the step, and the fractions next to a non-integer bound listed.
    std::vector<ExprPtr> fracs;
    for (int64_t r = units; r < per_unit; r += units) {
      fracs.push_back(Literal(FixedDecimal(r, decimals).substr(1)));  // ".5", ".25", ...
    }
    std::vector<ExprPtr> alts{NumberExpr(b, /*integer=*/true)};
    const int64_t ilo = static_cast<int64_t>(std::ceil(*b.lo));
    std::optional<int64_t> ihi;
    if (b.hi) ihi = static_cast<int64_t>(std::floor(*b.hi)) - 1;
    if (!ihi || *ihi >= ilo) {
      alts.push_back(Seq({MagnitudeRange(ilo, ihi ? *ihi : -1), Alt(fracs)}));
    }
    std::vector<int64_t> edges{static_cast<int64_t>(std::floor(*b.lo))};
    if (b.hi && static_cast<int64_t>(std::floor(*b.hi)) != edges[0]) {
      edges.push_back(static_cast<int64_t>(std::floor(*b.hi)));
    }
    for (int64_t whole : edges) {
      if (whole >= ilo && (!ihi || whole <= *ihi)) continue;  // covered above
      for (int64_t r = units; r < per_unit; r += units) {
        const int64_t scaled = whole * per_unit + r;
        if (inside(static_cast<double>(scaled) / static_cast<double>(per_unit))) {
          alts.push_back(Literal(FixedDecimal(scaled, decimals)));
        }
      }
    }
    return Alt(std::move(alts));
  }
  if (!b.lo || !b.hi) {
    return Status::InvalidArgument(what +
                                   " needs both a minimum and a maximum (or a multipleOf of the "
                                   "form 1, 0.1, 0.01, 10, 100, ..., or 0.5, 0.25, ... with a "
                                   "minimum >= 0)");
  }
  // Multiples i * units / 10^decimals within [lo, hi].
  const double scale = std::pow(10.0, decimals);
  const double lo = *b.lo * scale / static_cast<double>(units);
  const double hi = *b.hi * scale / static_cast<double>(units);
  if (std::fabs(lo) > 1e15 || std::fabs(hi) > 1e15) {
    return Status::InvalidArgument(what + ": the range is too large");
  }
  int64_t first = static_cast<int64_t>(std::ceil(lo - 1e-9));
  int64_t last = static_cast<int64_t>(std::floor(hi + 1e-9));
  if (b.lo_exclusive && std::fabs(static_cast<double>(first) - lo) <= 1e-9) ++first;
  if (b.hi_exclusive && std::fabs(static_cast<double>(last) - hi) <= 1e-9) --last;
  if (last - first + 1 > kMaxMultiples) {
    return Status::InvalidArgument(what + " allows more than " + std::to_string(kMaxMultiples) +
                                   " values in its range (not supported)");
  }
  std::vector<ExprPtr> alts;
  const int64_t one = static_cast<int64_t>(scale);
  for (int64_t i = first; i <= last; ++i) {
    const int64_t v = i * units;  // value * 10^decimals
    if (integer && v % one != 0) continue;
    alts.push_back(Literal(FixedDecimal(v, decimals)));
  }
  return Alt(std::move(alts));
}

ExprPtr NumberExpr(const NumberBounds& b, bool integer, int max_frac_digits) {
  if (max_frac_digits == 0) integer = true;
  const bool limited = max_frac_digits > 0;
  const int frac_digits = limited ? std::min(max_frac_digits, kMaxFracDigits) : kMaxFracDigits;
  // Integers in range.
  std::optional<double> ilo, ihi;
  if (b.lo) ilo = b.lo_exclusive ? std::floor(*b.lo) + 1 : std::ceil(*b.lo);
  if (b.hi) ihi = b.hi_exclusive ? std::ceil(*b.hi) - 1 : std::floor(*b.hi);
  // A bound at or beyond ±10^15 is open on its far side, but no integer of at most 15 digits lies
  // past a near one (minimum 999999999999999.5 used to let every integer through).
  const double limit = static_cast<double>(kNumberBoundLimit);
  ExprPtr ints = (ilo && *ilo >= limit) || (ihi && *ihi <= -limit)
                     ? Nothing()
                     : IntegerRange(ClampBound(ilo), ClampBound(ihi));
  if (integer) return ints;
  if (!b.lo && !b.hi) {
    if (limited) {
      return Seq({IntegerRange(std::nullopt, std::nullopt), Opt(Fraction(frac_digits))});
    }
    return Seq({IntegerRange(std::nullopt, std::nullopt),
                Opt(Seq({Literal("."), Digits(1, kMaxFracDigits)})),
                Opt(Seq({Alt({Literal("e"), Literal("E")}), Opt(Alt({Literal("+"), Literal("-")})),
                         Digits(1, 2)}))});
  }
  std::vector<ExprPtr> alts{ints};
  // A bound at or beyond the limit is open (the caller refuses it on the near side).
  auto bound = [](const std::optional<double>& v) -> std::optional<double> {
    if (!v || !std::isfinite(*v) || std::fabs(*v) >= static_cast<double>(kNumberBoundLimit)) {
      return std::nullopt;
    }
    return v;
  };
  const std::optional<double> lo = bound(b.lo), hi = bound(b.hi);
  // A magnitude bound as decimal text. An exclusive bound other than 0 becomes the next double
  // inward, inclusive: a decimal at or past that double's text reads back as a double strictly
  // past the bound (rounding is monotonic), which an exact decimal comparison with the bound does
  // not give (1000.4000000000000005 > 1000.4 as decimals, but reads back as 1000.4).
  auto magnitude = [](double m, bool exclusive, bool lower, bool* out_exclusive) {
    if (exclusive && m != 0.0) {
      m = std::nextafter(m, lower ? std::numeric_limits<double>::infinity() : 0.0);
      exclusive = false;
    }
    *out_exclusive = exclusive;
    return SplitDecimal(m);
  };
  // Non-negative decimals: magnitudes in [max(lo, 0), hi].
  if (!hi || *hi >= 0) {
    const bool from_lo = lo && *lo >= 0;
    bool a_excl = false, z_excl = false;
    const Decimal a = magnitude(from_lo ? *lo : 0.0, from_lo && b.lo_exclusive, true, &a_excl);
    std::optional<Decimal> z;
    if (hi) z = magnitude(*hi, b.hi_exclusive, false, &z_excl);
    alts.push_back(DecimalMagnitudes(a, a_excl, z, z_excl, frac_digits));
  }
  // Negative decimals: "-" and magnitudes in [max(-hi, 0), -lo].
  if (!lo || *lo < 0) {
    const bool from_hi = hi && *hi <= 0;
    bool a_excl = false, z_excl = false;
    const Decimal a = magnitude(from_hi ? -*hi : 0.0, from_hi && b.hi_exclusive, true, &a_excl);
    std::optional<Decimal> z;
    if (lo) z = magnitude(-*lo, b.lo_exclusive, false, &z_excl);
    alts.push_back(Seq({Literal("-"), DecimalMagnitudes(a, a_excl, z, z_excl, frac_digits)}));
  }
  return Alt(std::move(alts));
}

}  // namespace kiln::structured
