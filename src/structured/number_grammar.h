// Decimal number ranges → grammar: the JSON text of integers / numbers within inclusive or
// exclusive bounds, as a digit automaton: exact for integers within ±10^15 and for decimals I.F
// (fractions compared digit by digit with the bounds' shortest decimal text, so minimum 0.1 and
// maximum 0.25 take exactly 0.1 .. 0.25); unbounded numbers also take an exponent of at most 2
// digits. Unbounded integers have at most 15 digits, fractions at most 16.
//
// Not responsible for: reading the bounds from a schema (ParseNumberBounds) or refusing bounds
// beyond ±10^15 on the near side (the caller does; such bounds are treated here as open).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "kiln/status.h"
#include "structured/grammar.h"
#include "structured/schema_exclusivity.h"

namespace kiln::structured {

// |bounds| at or above this are treated as open.
inline constexpr int64_t kNumberBoundLimit = 1000000000000000;

// `max_frac_digits` >= 0 limits decimals to that many digits and drops the exponent (multipleOf
// 0.01 and the like); -1 = the defaults above.
ExprPtr NumberExpr(const NumberBounds& bounds, bool integer, int max_frac_digits = -1);

// Numbers (integers if `integer`) within `bounds` that are multiples of `multiple_of` (> 0, at most
// 9 decimals): 1, 0.1, 0.01, ... are "at most d decimals" over any range; any other value needs
// both bounds and at most kMaxMultiples multiples in them, which are listed. InvalidArgument
// otherwise (the message names multipleOf).
inline constexpr int kMaxMultiples = 4096;
StatusOr<ExprPtr> MultipleOfExpr(const NumberBounds& bounds, double multiple_of, bool integer);

}  // namespace kiln::structured
