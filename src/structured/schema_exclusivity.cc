#include "structured/schema_exclusivity.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "structured/schema_value.h"

namespace kiln::structured {
namespace {

using Json = SchemaJson;

constexpr int kMaxDepth = 32;

// JSON types as bits; "integer" is a number (see IntegerOnly).
enum : int {
  kNull = 1,
  kBoolean = 2,
  kObject = 4,
  kArray = 8,
  kString = 16,
  kNumber = 32,
  kAllTypes = 63,
};

int TypeBit(const std::string& t) {
  if (t == "null") return kNull;
  if (t == "boolean") return kBoolean;
  if (t == "object") return kObject;
  if (t == "array") return kArray;
  if (t == "string") return kString;
  if (t == "number" || t == "integer") return kNumber;
  return kAllTypes;  // unknown: the compile reports it; here it proves nothing
}

int ValueType(const Json& v) {
  if (v.is_null()) return kNull;
  if (v.is_boolean()) return kBoolean;
  if (v.is_object()) return kObject;
  if (v.is_array()) return kArray;
  if (v.is_string()) return kString;
  return kNumber;
}

bool Has(const Json& s, const char* key) { return s.is_object() && s.contains(key); }

// Types of the values a schema may hold. Valid semantics: only "type" (and "nullable") restrict.
// Generated semantics: kiln infers the type from keywords when "type" is absent.
int Types(const Json& s, bool generated) {
  int bits = 0;
  if (Has(s, "type")) {
    const Json& t = s["type"];
    if (t.is_string()) {
      bits = TypeBit(t.get<std::string>());
    } else if (t.is_array()) {
      for (const auto& x : t) bits |= x.is_string() ? TypeBit(x.get<std::string>()) : kAllTypes;
    } else {
      return kAllTypes;
    }
  } else if (generated) {
    auto any = [&](std::initializer_list<const char*> keys) {
      for (const char* k : keys) {
        if (s.contains(k)) return true;
      }
      return false;
    };
    if (any({"properties", "required", "additionalProperties", "minProperties", "maxProperties",
             "unevaluatedProperties"})) {
      bits |= kObject;
    }
    if (any({"items", "prefixItems", "minItems", "maxItems", "additionalItems"})) bits |= kArray;
    if (any({"minLength", "maxLength", "pattern", "format"})) bits |= kString;
    if (any({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})) {
      bits |= kNumber;
    }
    if (bits == 0) return kAllTypes;
  } else {
    return kAllTypes;
  }
  if (Has(s, "nullable") && s["nullable"] == true) bits |= kNull;
  return bits;
}

// "type" admits integers but not other numbers.
bool IntegerOnly(const Json& s) {
  if (!Has(s, "type")) return false;
  const Json& t = s["type"];
  Json types = t.is_array() ? t : Json::array({t});
  bool integer = false;
  for (const auto& x : types) {
    if (x == "number") return false;
    if (x == "integer") integer = true;
  }
  return integer;
}

// Values a const/enum schema is limited to; nullopt when it has neither.
std::optional<std::vector<Json>> ValueSet(const Json& s) {
  if (Has(s, "const")) return std::vector<Json>{s["const"]};
  if (Has(s, "enum") && s["enum"].is_array()) {
    return std::vector<Json>(s["enum"].begin(), s["enum"].end());
  }
  return std::nullopt;
}

// A closed-or-open real interval; integer-only schemas are rounded inward to closed bounds.
struct Interval {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_exclusive = false, hi_exclusive = false;
};

std::optional<Interval> NumberInterval(const Json& s) {
  auto b = ParseNumberBounds(s, "");
  if (!b.ok()) return std::nullopt;
  Interval r;
  if (b->lo) {
    r.lo = *b->lo;
    r.lo_exclusive = b->lo_exclusive;
  }
  if (b->hi) {
    r.hi = *b->hi;
    r.hi_exclusive = b->hi_exclusive;
  }
  if (IntegerOnly(s)) {
    if (std::isfinite(r.lo)) r.lo = r.lo_exclusive ? std::floor(r.lo) + 1 : std::ceil(r.lo);
    if (std::isfinite(r.hi)) r.hi = r.hi_exclusive ? std::ceil(r.hi) - 1 : std::floor(r.hi);
    r.lo_exclusive = r.hi_exclusive = false;
  }
  return r;
}

bool Below(const Interval& a, const Interval& b) {  // every point of a lies below every point of b
  return a.hi < b.lo || (a.hi == b.lo && (a.hi_exclusive || b.lo_exclusive));
}

bool IntervalsDisjoint(const std::optional<Interval>& a, const std::optional<Interval>& b) {
  if (!a || !b) return false;
  if (a->lo > a->hi || b->lo > b->hi) return true;  // an empty range
  return Below(*a, *b) || Below(*b, *a);
}

bool Outside(double v, const Interval& r) {
  return v < r.lo || v > r.hi || (v == r.lo && r.lo_exclusive) || (v == r.hi && r.hi_exclusive);
}

// [min, max] of a count keyword pair (minLength/maxLength, minItems/maxItems); max -1 = open.
std::pair<int64_t, int64_t> CountRange(const Json& s, const char* min_key, const char* max_key) {
  int64_t lo = 0, hi = -1;
  if (Has(s, min_key) && s[min_key].is_number_integer()) lo = s[min_key].get<int64_t>();
  if (Has(s, max_key) && s[max_key].is_number_integer()) hi = s[max_key].get<int64_t>();
  return {lo, hi};
}

bool CountsDisjoint(std::pair<int64_t, int64_t> a, std::pair<int64_t, int64_t> b) {
  return (a.second >= 0 && a.second < b.first) || (b.second >= 0 && b.second < a.first);
}

bool OutsideCount(int64_t n, std::pair<int64_t, int64_t> r) {
  return n < r.first || (r.second >= 0 && n > r.second);
}

int64_t CodePoints(const std::string& s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

std::set<std::string> Required(const Json& s) {
  std::set<std::string> r;
  if (Has(s, "required") && s["required"].is_array()) {
    for (const auto& k : s["required"]) {
      if (k.is_string()) r.insert(k.get<std::string>());
    }
  }
  return r;
}

const Json* Property(const Json& s, const std::string& key) {
  if (!Has(s, "properties") || !s["properties"].is_object()) return nullptr;
  auto it = s["properties"].find(key);
  return it == s["properties"].end() ? nullptr : &*it;
}

// Schema of `key`'s value in an object valid under `s` (JSON Schema: absent
// additionalProperties = any value).
Json ValidValueSchema(const Json& s, const std::string& key) {
  if (const Json* p = Property(s, key)) return *p;
  if (Has(s, "additionalProperties")) return s["additionalProperties"];
  return true;
}

// kiln generates any JSON value for `s` (true, or no keyword that implies a type), so any object
// with any keys.
bool GeneratesAnyValue(const Json& s) {
  return !s.is_object() || (!s.contains("type") && Types(s, true) == kAllTypes);
}

// Schema of `key`'s value in an object kiln generates for `s`; nullopt when kiln never emits
// `key` (absent additionalProperties = no extra keys; excluded extra keys).
std::optional<Json> GeneratedValueSchema(const Json& s, const std::string& key,
                                         const std::set<std::string>* exclude) {
  if (GeneratesAnyValue(s)) return Json(true);
  if (const Json* p = Property(s, key)) return *p;
  const bool extras = Has(s, "additionalProperties") && s["additionalProperties"] != false;
  if (Required(s).count(key)) return extras ? s["additionalProperties"] : Json(true);
  if (!extras) return std::nullopt;
  if (exclude && exclude->count(key)) return std::nullopt;
  if (Has(s, kExcludeExtraKeys) && s[kExcludeExtraKeys].is_array()) {
    for (const auto& k : s[kExcludeExtraKeys]) {
      if (k == key) return std::nullopt;
    }
  }
  return s["additionalProperties"];
}

}  // namespace

StatusOr<NumberBounds> ParseNumberBounds(const SchemaJson& s, const std::string& path) {
  auto num = [&](const char* key) -> StatusOr<std::optional<double>> {
    if (!s.contains(key)) return std::optional<double>();
    if (s[key].is_boolean()) return std::optional<double>();  // draft-4 exclusive flags
    if (!s[key].is_number()) {
      return Status::InvalidArgument("json_schema at " + path + ": " + key + " must be a number");
    }
    return std::optional<double>(s[key].get<double>());
  };
  NumberBounds b;
  KILN_ASSIGN_OR_RETURN(std::optional<double> mn, num("minimum"));
  KILN_ASSIGN_OR_RETURN(std::optional<double> mx, num("maximum"));
  KILN_ASSIGN_OR_RETURN(std::optional<double> emn, num("exclusiveMinimum"));
  KILN_ASSIGN_OR_RETURN(std::optional<double> emx, num("exclusiveMaximum"));
  b.lo = mn;
  b.hi = mx;
  if (s.contains("exclusiveMinimum") && s["exclusiveMinimum"] == true) b.lo_exclusive = true;
  if (s.contains("exclusiveMaximum") && s["exclusiveMaximum"] == true) b.hi_exclusive = true;
  if (emn && (!b.lo || *emn >= *b.lo)) {
    b.lo = emn;
    b.lo_exclusive = true;
  }
  if (emx && (!b.hi || *emx <= *b.hi)) {
    b.hi = emx;
    b.hi_exclusive = true;
  }
  return b;
}

bool ExclusivityProver::NoGeneratedValueIsValid(const SchemaJson& gen, const SchemaJson& valid,
                                                std::set<std::string>* exclude_extra_keys) {
  return NoGenValid(gen, valid, 0, exclude_extra_keys);
}

std::optional<SchemaJson> ExclusivityProver::Normalize(const SchemaJson& s) {
  if (!s.is_object()) return s;
  if (s.contains("not_satisfiable")) return Json(false);
  if (!s.contains("$ref") && !s.contains("allOf")) return s;
  Json merged = Json::object();
  if (!merge_(&merged, s).ok()) return std::nullopt;
  if (merged.contains("not_satisfiable")) return Json(false);
  return merged;
}

std::optional<std::vector<SchemaJson>> ExclusivityProver::Branches(const SchemaJson& s,
                                                                   bool with_siblings) {
  const char* comb = s.contains("anyOf") ? "anyOf" : "oneOf";
  if (!s[comb].is_array()) return std::nullopt;
  Json siblings = s;
  siblings.erase("anyOf");
  siblings.erase("oneOf");
  std::vector<Json> out;
  for (const auto& b : s[comb]) {
    if (!with_siblings) {
      out.push_back(b);
      continue;
    }
    Json merged = siblings;
    if (!merge_(&merged, b).ok()) return std::nullopt;
    out.push_back(std::move(merged));
  }
  return out;
}

bool ExclusivityProver::NoGenValid(const SchemaJson& gen_in, const SchemaJson& valid_in, int depth,
                                   std::set<std::string>* exclude) {
  if (depth > kMaxDepth || --*budget_ < 0) return false;
  auto gen_n = Normalize(gen_in);
  auto valid_n = Normalize(valid_in);
  if (!gen_n || !valid_n) return false;
  const Json& gen = *gen_n;
  const Json& valid = *valid_n;
  if (gen == false || valid == false) return true;
  if (valid == true) return false;
  if (!valid.is_object()) return false;
  if (gen.is_object() && (gen.contains("anyOf") || gen.contains("oneOf"))) {
    // kiln generates one branch (merged with the other keywords): each must be excluded.
    auto branches = Branches(gen, /*with_siblings=*/true);
    if (!branches) return false;
    for (const auto& b : *branches) {
      if (!NoGenValid(b, valid, depth + 1, nullptr)) return false;
    }
    return true;
  }
  if (gen.is_object()) {
    if (auto values = ValueSet(gen)) {
      for (const auto& v : *values) {
        if (!ValueExcluded(v, valid, /*generated=*/false, depth + 1)) return false;
      }
      return true;
    }
  }
  if (valid.contains("anyOf") || valid.contains("oneOf")) {
    // A valid value satisfies the other keywords and at least one branch.
    Json siblings = valid;
    siblings.erase("anyOf");
    siblings.erase("oneOf");
    if (NoGenValid(gen, siblings, depth + 1, exclude)) return true;
    auto branches = Branches(valid, /*with_siblings=*/false);
    if (!branches) return false;
    for (const auto& b : *branches) {
      if (!NoGenValid(gen, b, depth + 1, exclude)) return false;
    }
    return true;
  }
  if (auto values = ValueSet(valid)) {
    bool all = true;
    for (const auto& v : *values) {
      all = all && ValueExcluded(v, gen, /*generated=*/true, depth + 1);
    }
    if (all) return true;
  }
  const int common = Types(gen, true) & Types(valid, false);
  if (common & (kNull | kBoolean)) return false;  // only values could tell those apart
  if ((common & kNumber) && !IntervalsDisjoint(NumberInterval(gen), NumberInterval(valid))) {
    return false;
  }
  if ((common & kString) && !CountsDisjoint(CountRange(gen, "minLength", "maxLength"),
                                            CountRange(valid, "minLength", "maxLength"))) {
    return false;
  }
  if ((common & kArray) && !CountsDisjoint(CountRange(gen, "minItems", "maxItems"),
                                           CountRange(valid, "minItems", "maxItems"))) {
    return false;
  }
  if ((common & kObject) && !ObjectsExclusive(gen, valid, depth, exclude)) return false;
  return true;
}

bool ExclusivityProver::ObjectsExclusive(const SchemaJson& gen, const SchemaJson& valid, int depth,
                                         std::set<std::string>* exclude) {
  const std::set<std::string> gen_required = Required(gen);
  const std::set<std::string> valid_required = Required(valid);
  // A key the valid side requires and kiln never emits for `gen`.
  for (const auto& k : valid_required) {
    if (!GeneratedValueSchema(gen, k, exclude)) return true;
  }
  // A key present in every instance of interest whose values cannot agree: required by `gen` (so
  // always emitted), or required by `valid` (an instance without it is invalid anyway).
  std::set<std::string> keys = gen_required;
  keys.insert(valid_required.begin(), valid_required.end());
  // Discriminators (a const/enum on either side) first: cheap, and the usual proof; then the
  // rest, which may recurse deep into the values.
  for (const bool discriminators : {true, false}) {
    for (const auto& k : keys) {
      auto g = GeneratedValueSchema(gen, k, exclude);
      if (!g) continue;
      const Json v = ValidValueSchema(valid, k);
      const bool discriminator =
          Has(*g, "const") || Has(*g, "enum") || Has(v, "const") || Has(v, "enum");
      if (discriminator != discriminators) continue;
      if (NoGenValid(*g, v, depth + 1, nullptr)) return true;
    }
  }
  // Restriction: keep kiln from emitting, as an extra key, a key the valid side requires.
  if (exclude && !GeneratesAnyValue(gen)) {
    for (const auto& k : valid_required) {
      if (!Property(gen, k) && !gen_required.count(k)) {
        exclude->insert(k);
        return true;
      }
    }
  }
  return false;
}

bool ExclusivityProver::ValueExcluded(const SchemaJson& v, const SchemaJson& schema_in,
                                      bool generated, int depth) {
  if (depth > kMaxDepth || --*budget_ < 0) return false;
  auto schema_n = Normalize(schema_in);
  if (!schema_n) return false;
  const Json& s = *schema_n;
  if (s == false) return true;
  if (!s.is_object()) return false;
  if (s.contains("anyOf") || s.contains("oneOf")) {
    // Valid: the other keywords hold too. Generated: kiln emits a branch merged with them, whose
    // values need not be values kiln generates for the other keywords alone (a merged branch may
    // add properties), so only the merged branches tell.
    if (!generated) {
      Json siblings = s;
      siblings.erase("anyOf");
      siblings.erase("oneOf");
      if (ValueExcluded(v, siblings, generated, depth + 1)) return true;
    }
    auto branches = Branches(s, /*with_siblings=*/generated);
    if (!branches) return false;
    for (const auto& b : *branches) {
      if (!ValueExcluded(v, b, generated, depth + 1)) return false;
    }
    return true;
  }
  if (auto values = ValueSet(s)) {
    bool found = false;
    for (const auto& x : *values) found = found || JsonEqual(v, x);
    if (!found) return true;
  }
  if (!(Types(s, generated) & ValueType(v))) return true;
  if (v.is_number()) {
    const double x = v.get<double>();
    if (IntegerOnly(s) && x != std::floor(x)) return true;
    auto r = NumberInterval(s);
    if (r && Outside(x, *r)) return true;
  } else if (v.is_string()) {
    if (OutsideCount(CodePoints(v.get<std::string>()), CountRange(s, "minLength", "maxLength"))) {
      return true;
    }
  } else if (v.is_array()) {
    if (OutsideCount(static_cast<int64_t>(v.size()), CountRange(s, "minItems", "maxItems"))) {
      return true;
    }
    // prefixItems is kiln's tuple form; a draft-07 validator ignores it (and then applies an
    // object "items" to every element), so with prefixItems only the generated side is judged.
    const bool has_prefix = Has(s, "prefixItems");
    const Json* prefix =
        generated && has_prefix && s["prefixItems"].is_array() ? &s["prefixItems"] : nullptr;
    for (size_t i = 0; i < v.size(); ++i) {
      if (prefix && i < prefix->size()) {
        if (ValueExcluded(v[i], (*prefix)[i], generated, depth + 1)) return true;
      } else if (!has_prefix && Has(s, "items") && s["items"].is_object()) {
        if (ValueExcluded(v[i], s["items"], generated, depth + 1)) return true;
      }
    }
  } else if (v.is_object()) {
    for (const auto& k : Required(s)) {
      if (!v.contains(k)) return true;
    }
    for (auto& [k, x] : v.items()) {
      std::optional<Json> sub =
          generated ? GeneratedValueSchema(s, k, nullptr) : ValidValueSchema(s, k);
      if (!sub || ValueExcluded(x, *sub, generated, depth + 1)) return true;
    }
  }
  return false;
}

}  // namespace kiln::structured
