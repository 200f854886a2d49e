// Schema exclusivity: proves that two JSON-Schema branches cannot match the same value, so that
// `oneOf` ("exactly one branch") can be compiled as a union of its branches without ever emitting a
// value that two branches accept. The proof is conservative: false means "not proven", never
// "they overlap for sure".
//
// Two semantics meet here. The *generated* set G(S) is what kiln's grammar for S emits — a subset
// of the values valid under S, narrower where kiln restricts generation: an absent
// additionalProperties emits no extra keys, types are inferred from keywords ({"properties": …}
// emits only objects), extra keys listed in kExcludeExtraKeys are never emitted. The *valid* set
// V(S) is JSON Schema's (what ajv accepts): an absent additionalProperties allows any extra key, a
// schema without "type" accepts every type. oneOf branch i is exact when G(i) ∩ V(j) = ∅ for every
// j ≠ i; NoGeneratedValueIsValid proves one such pair.
//
// What is proven: different JSON types; disjoint const/enum values (checked value by value against
// the other branch); non-overlapping number ranges (integer bounds rounded inward); non-overlapping
// string lengths and array sizes; objects where the other branch requires a key this branch never
// emits, or where a key required by either branch has provably exclusive value schemas (the
// discriminated unions Pydantic emits: {"kind": {"const": "a"}} vs {"kind": {"const": "b"}}).
// Restriction: when this branch's object allows extra keys and the other branch requires a key this
// branch does not list, the key can be added to `exclude_extra_keys` (the caller then keeps kiln's
// grammar from emitting it, which makes the pair exclusive). Nested anyOf/oneOf are handled branch
// by branch; $ref and allOf are resolved through the converter's merge function. The work is
// bounded by a step budget the caller shares across one compile (kProofBudget steps): past it,
// nothing more is proven (recursive schemas could otherwise make a proof branch exponentially).
//
// Thread-safety: a prover is used by one thread (it is part of one compile).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "kiln/status.h"

namespace kiln::structured {

using SchemaJson = nlohmann::ordered_json;

// Internal keyword: extra-property keys kiln must not generate for this object schema.
inline constexpr const char* kExcludeExtraKeys = "$kiln_exclude_extra_keys";

// Number bounds of a schema (minimum / maximum / exclusiveMinimum / exclusiveMaximum, with the
// draft-4 boolean exclusive flags); nullopt = open.
struct NumberBounds {
  std::optional<double> lo, hi;
  bool lo_exclusive = false, hi_exclusive = false;
};
StatusOr<NumberBounds> ParseNumberBounds(const SchemaJson& schema, const std::string& path);

// Merges `b` into `*a` with allOf semantics, resolving $ref (supplied by the converter).
using SchemaMerge = std::function<Status(SchemaJson* a, const SchemaJson& b)>;
// Resolves a local "$ref" ("#/...") to the schema it names (supplied by the converter).
using SchemaRefResolver = std::function<StatusOr<const SchemaJson*>(const std::string& ref)>;

class ExclusivityProver final {
 public:
  // Proof steps one compile may spend (~20 µs each on recursive schemas: ≤ ~1 s in all).
  static constexpr int64_t kProofBudget = 50000;

  // `budget` (steps left, shared by the provers of one compile) must outlive the prover.
  ExclusivityProver(SchemaMerge merge, int64_t* budget)
      : merge_(std::move(merge)), budget_(budget) {}

  // True when no value kiln generates for `gen` is valid under `valid`. `exclude_extra_keys` (may
  // be null) receives keys that `gen`'s top-level object must not emit for the proof to hold.
  bool NoGeneratedValueIsValid(const SchemaJson& gen, const SchemaJson& valid,
                               std::set<std::string>* exclude_extra_keys);
  // The budget is spent: a false answer may only mean "ran out of steps".
  bool exhausted() const { return *budget_ < 0; }

 private:
  bool NoGenValid(const SchemaJson& gen, const SchemaJson& valid, int depth,
                  std::set<std::string>* exclude);
  // True when `value` is provably not in G(schema) (generated) or not in V(schema) (!generated).
  bool ValueExcluded(const SchemaJson& value, const SchemaJson& schema, bool generated, int depth);
  bool ObjectsExclusive(const SchemaJson& gen, const SchemaJson& valid, int depth,
                        std::set<std::string>* exclude);
  // $ref / allOf resolved (merged); nullopt when that fails.
  std::optional<SchemaJson> Normalize(const SchemaJson& schema);
  // Branches of an anyOf/oneOf schema, each merged with the schema's other keywords when
  // `with_siblings`; nullopt when a merge fails.
  std::optional<std::vector<SchemaJson>> Branches(const SchemaJson& schema, bool with_siblings);

  SchemaMerge merge_;
  int64_t* budget_;
};

}  // namespace kiln::structured
