// Decimal number ranges → grammar: the JSON text of integers / numbers within inclusive or
// exclusive bounds, as a sound digit automaton (integers exactly within ±10^15; numbers: integers
// in range plus decimals I.F whose whole interval (I, I+1) lies in range; unbounded numbers also
// take an exponent of at most 2 digits). Unbounded integers have at most 15 digits, fractions at
// most 16.
//
// Not responsible for: reading the bounds from a schema (ParseNumberBounds) or refusing bounds
// beyond ±10^15 on the near side (the caller does; such bounds are treated here as open).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "structured/grammar.h"
#include "structured/schema_exclusivity.h"

namespace kiln::structured {

// |bounds| at or above this are treated as open.
inline constexpr int64_t kNumberBoundLimit = 1000000000000000;

ExprPtr NumberExpr(const NumberBounds& bounds, bool integer);

}  // namespace kiln::structured
