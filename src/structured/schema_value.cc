#include "structured/schema_value.h"

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "structured/regex.h"
#include "structured/schema_merge.h"

namespace kiln::structured {
namespace {

using Json = SchemaJson;

constexpr int kMaxDepth = 64;

Status Err(const std::string& path, const std::string& what) {
  return Status::InvalidArgument("json_schema at " + path + ": " + what);
}

// A value for messages, cut short.
std::string Show(const Json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

int64_t CodePoints(const std::string& s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

bool TypeMatches(const std::string& type, const Json& v) {
  if (type == "integer") return v.is_number() && v.get<double>() == std::floor(v.get<double>());
  return (type == "string" && v.is_string()) || (type == "boolean" && v.is_boolean()) ||
         (type == "null" && v.is_null()) || (type == "object" && v.is_object()) ||
         (type == "array" && v.is_array()) || (type == "number" && v.is_number());
}

// A count keyword (minLength, maxItems, ...): a non-negative integer; nullopt when absent.
StatusOr<std::optional<int64_t>> Count(const Json& s, const char* key, const std::string& path) {
  if (!s.contains(key)) return std::optional<int64_t>();
  if (!s[key].is_number_integer() || s[key].get<int64_t>() < 0) {
    return Err(path, std::string(key) + " must be a non-negative integer");
  }
  return std::optional<int64_t>(s[key].get<int64_t>());
}

// Sets of end positions (a bitmap over 0..n) reachable by matching `e` from positions `from`.
std::vector<char> Ends(const Expr& e, const std::string& s, const std::vector<char>& from) {
  const size_t n = s.size();
  std::vector<char> out(n + 1, 0);
  switch (e.kind) {
    case Expr::Kind::kEmpty:
      return from;
    case Expr::Kind::kNothing:
    case Expr::Kind::kRef:  // regexes and formats have no rules
      return out;
    case Expr::Kind::kBytes:
      for (size_t i = 0; i < n; ++i) {
        if (from[i] && e.bytes.test(static_cast<uint8_t>(s[i]))) out[i + 1] = 1;
      }
      return out;
    case Expr::Kind::kSeq: {
      std::vector<char> cur = from;
      for (const auto& c : e.children) cur = Ends(*c, s, cur);
      return cur;
    }
    case Expr::Kind::kAlt:
      for (const auto& c : e.children) {
        std::vector<char> r = Ends(*c, s, from);
        for (size_t i = 0; i <= n; ++i) out[i] |= r[i];
      }
      return out;
    case Expr::Kind::kRepeat: {
      std::vector<char> cur = from;
      if (e.min_repeat == 0) out = from;
      for (int k = 1; e.max_repeat < 0 || k <= e.max_repeat; ++k) {
        cur = Ends(*e.children[0], s, cur);
        bool any = false, fresh = false;
        for (size_t i = 0; i <= n; ++i) {
          if (!cur[i]) continue;
          any = true;
          if (k >= e.min_repeat && !out[i]) {
            out[i] = 1;
            fresh = true;
          }
        }
        // Past the minimum, positions seen before lead only where they led before.
        if (!any || (k >= e.min_repeat && !fresh)) break;
      }
      return out;
    }
  }
  return out;
}

}  // namespace

const std::set<std::string>& IgnoredKeywords() {
  static const std::set<std::string> k = {
      "$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated",
      "readOnly", "writeOnly", "contentEncoding", "contentMediaType", "$defs", "definitions",
      "strict", "name", kExcludeExtraKeys,
      // OpenAPI / Pydantic: names the property that tells oneOf branches apart; the exclusivity
      // of the branches is proven from the branches themselves (schema_exclusivity.h).
      "discriminator"};
  return k;
}

const std::set<std::string>& SupportedKeywords() {
  static const std::set<std::string> k = {"type",
                                          "properties",
                                          "required",
                                          "additionalProperties",
                                          "items",
                                          "prefixItems",
                                          "additionalItems",
                                          "minItems",
                                          "maxItems",
                                          "enum",
                                          "const",
                                          "anyOf",
                                          "oneOf",
                                          "allOf",
                                          "$ref",
                                          "minLength",
                                          "maxLength",
                                          "pattern",
                                          "format",
                                          "minimum",
                                          "maximum",
                                          "exclusiveMinimum",
                                          "exclusiveMaximum",
                                          "nullable",
                                          "uniqueItems",
                                          "multipleOf",
                                          "minProperties",
                                          "maxProperties",
                                          "unevaluatedProperties"};
  return k;
}

static ExprPtr RegexOrDie(const char* pattern) {
  auto r = RegexToExpr(pattern, RegexMode::kRaw);
  return r.ok() ? *r : Nothing();
}

// Formats: sound subsets of what ajv-formats accepts ("full" mode).
std::optional<ExprPtr> FormatExpr(const std::string& format) {
  static const char* kDate =
      "[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|"
      "(?:0[13578]|1[02])-31)";
  static const char* kTime =
      "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):"
      "[0-5][0-9])";
  if (format == "date") return RegexOrDie(kDate);
  if (format == "time") return RegexOrDie(kTime);
  if (format == "date-time") return RegexOrDie((std::string(kDate) + "T" + kTime).c_str());
  if (format == "email") {
    return RegexOrDie(
        "[a-zA-Z0-9_+-]+(?:\\.[a-zA-Z0-9_+-]+)*@(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?\\."
        ")"
        "{1,4}[a-zA-Z]{2,12}");
  }
  if (format == "uuid") {
    return RegexOrDie("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
  }
  if (format == "ipv4") {
    return RegexOrDie(
        "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}"
        "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])");
  }
  // Sound subsets of what ajv-formats accepts: http(s) URLs with a DNS name, and DNS names.
  static const char* kLabel = "[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?";
  if (format == "uri" || format == "uri-reference" || format == "iri" || format == "url") {
    return RegexOrDie(
        "https?://(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,12}(?::[1-9][0-9]{1,4})?"
        "(?:/[a-zA-Z0-9._~-]+)*/?(?:\\?[a-zA-Z0-9_.~-]+=[a-zA-Z0-9_.~-]*"
        "(?:&[a-zA-Z0-9_.~-]+=[a-zA-Z0-9_.~-]*)*)?");
  }
  if (format == "hostname") {
    return RegexOrDie((std::string("(?:") + kLabel + "\\.){0,4}" + kLabel).c_str());
  }
  return std::nullopt;
}

bool JsonEqual(const SchemaJson& a, const SchemaJson& b) {
  return nlohmann::json::parse(a.dump()) == nlohmann::json::parse(b.dump());
}

bool ExprMatchesAll(const ExprPtr& expr, const std::string& bytes) {
  std::vector<char> from(bytes.size() + 1, 0);
  from[0] = 1;
  return Ends(*expr, bytes, from)[bytes.size()] != 0;
}

StatusOr<std::vector<SchemaJson>> ValueChecker::AllowedValues(const SchemaJson& schema,
                                                              const std::string& path,
                                                              std::vector<std::string>* dropped) {
  std::vector<Json> candidates;
  if (schema.contains("const")) {
    candidates.push_back(schema["const"]);
  } else {
    if (!schema["enum"].is_array()) return Err(path, "enum must be an array");
    candidates.assign(schema["enum"].begin(), schema["enum"].end());
  }
  // Each candidate against the other keywords (its own enum would hold trivially, at O(n²)).
  Json others = schema;
  others.erase(schema.contains("const") ? "const" : "enum");
  std::vector<Json> kept;
  for (const auto& v : candidates) {
    std::string why;
    KILN_ASSIGN_OR_RETURN(bool ok, Valid(v, others, path, &why));
    if (ok) {
      kept.push_back(v);
    } else if (dropped) {
      dropped->push_back(Show(v) + " " + why);
    }
  }
  return kept;
}

StatusOr<bool> ValueChecker::Valid(const SchemaJson& value, const SchemaJson& schema,
                                   const std::string& path, std::string* why) {
  return ValidAt(value, schema, path, 0, why);
}

StatusOr<bool> ValueChecker::ValidAt(const SchemaJson& v, const SchemaJson& s,
                                     const std::string& path, int depth, std::string* why) {
  if (depth > kMaxDepth) return Err(path, "schema nesting too deep to check an enum/const value");
  if (s.is_boolean()) {
    if (!s.get<bool>()) *why = "is not allowed (false schema at " + path + ")";
    return s.get<bool>();
  }
  if (!s.is_object()) return Err(path, "a schema must be an object or a boolean");
  for (auto& [key, unused] : s.items()) {
    if (IgnoredKeywords().count(key)) continue;
    if (key == "not_satisfiable") {
      *why = "is not allowed (unsatisfiable schema at " + path + ")";
      return false;
    }
    if (!SupportedKeywords().count(key)) return Err(path, "unsupported keyword '" + key + "'");
  }
  if (s.contains("uniqueItems") && s["uniqueItems"] != false) {
    return Err(path, "unsupported keyword 'uniqueItems' (true)");
  }
  if (s.contains("unevaluatedProperties")) {
    Json lowered = s;
    if (LowerUnevaluatedProperties(&lowered)) {
      return Err(path,
                 "unevaluatedProperties next to allOf/anyOf/oneOf/$ref in a schema with enum "
                 "or const values is not supported");
    }
    return ValidAt(v, lowered, path, depth, why);
  }
  auto fail = [&](const std::string& what) {
    *why = what + (path.empty() ? "" : " (at " + path + ")");
    return false;
  };
  // Sub-schemas: every one must hold (allOf, $ref), some (anyOf), exactly one (oneOf).
  if (s.contains("$ref")) {
    if (!s["$ref"].is_string()) return Err(path, "$ref must be a string");
    KILN_ASSIGN_OR_RETURN(const Json* target, resolve_(s["$ref"].get<std::string>()));
    KILN_ASSIGN_OR_RETURN(bool ok,
                          ValidAt(v, *target, s["$ref"].get<std::string>(), depth + 1, why));
    if (!ok) return false;
  }
  for (const char* comb : {"allOf", "anyOf", "oneOf"}) {
    if (!s.contains(comb)) continue;
    const Json& branches = s[comb];
    if (!branches.is_array() || branches.empty()) {
      return Err(path, std::string(comb) + " must be a non-empty array");
    }
    int matches = 0;
    std::string branch_why;
    for (size_t i = 0; i < branches.size(); ++i) {
      std::string w;
      KILN_ASSIGN_OR_RETURN(
          bool ok,
          ValidAt(v, branches[i], path + "/" + comb + "/" + std::to_string(i), depth + 1, &w));
      matches += ok;
      if (!ok && branch_why.empty()) branch_why = w;
      if (!ok && std::string(comb) == "allOf") {
        *why = w;
        return false;
      }
    }
    if (std::string(comb) == "anyOf" && matches == 0) return fail("matches no anyOf branch");
    if (std::string(comb) == "oneOf" && matches != 1) {
      return fail("matches " + std::to_string(matches) + " oneOf branches, not exactly one");
    }
  }
  if (s.contains("const") && !JsonEqual(v, s["const"])) return fail("differs from const");
  if (s.contains("enum")) {
    if (!s["enum"].is_array()) return Err(path, "enum must be an array");
    bool found = false;
    for (const auto& x : s["enum"]) found = found || JsonEqual(v, x);
    if (!found) return fail("is not in enum");
  }
  if (s.contains("type")) {
    const Json& t = s["type"];
    if (!t.is_string() && !t.is_array()) return Err(path, "type must be a string or an array");
    Json types = t.is_array() ? t : Json::array({t});
    bool ok = v.is_null() && s.value("nullable", false) == true;
    for (const auto& ty : types) {
      if (!ty.is_string()) return Err(path, "type entries must be strings");
      ok = ok || TypeMatches(ty.get<std::string>(), v);
    }
    if (!ok) return fail("does not have type " + t.dump());
  }
  if (v.is_number()) {
    KILN_ASSIGN_OR_RETURN(NumberBounds b, ParseNumberBounds(s, path));
    const double x = v.get<double>();
    if (b.lo && (x < *b.lo || (b.lo_exclusive && x == *b.lo))) {
      return fail(std::string("is below the ") + (b.lo_exclusive ? "exclusive " : "") + "minimum " +
                  Json(*b.lo).dump());
    }
    if (b.hi && (x > *b.hi || (b.hi_exclusive && x == *b.hi))) {
      return fail(std::string("is above the ") + (b.hi_exclusive ? "exclusive " : "") + "maximum " +
                  Json(*b.hi).dump());
    }
    if (s.contains("multipleOf")) {
      const Json& m = s["multipleOf"];
      if (!m.is_number() || !(m.get<double>() > 0)) {
        return Err(path, "multipleOf must be a number greater than 0");
      }
      const double q = x / m.get<double>();
      if (std::fabs(q - std::round(q)) > 1e-9 * std::max(1.0, std::fabs(q))) {
        return fail("is not a multiple of " + m.dump());
      }
    }
    return true;
  }
  if (v.is_string()) {
    KILN_ASSIGN_OR_RETURN(bool ok, ValidString(v.get<std::string>(), s, path, why));
    return ok;
  }
  if (v.is_array()) return ValidArray(v, s, path, depth, why);
  if (v.is_object()) return ValidObject(v, s, path, depth, why);
  return true;
}

StatusOr<bool> ValueChecker::ValidString(const std::string& v, const SchemaJson& s,
                                         const std::string& path, std::string* why) {
  auto fail = [&](const std::string& what) {
    *why = what + " (at " + path + ")";
    return false;
  };
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> min_len, Count(s, "minLength", path));
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> max_len, Count(s, "maxLength", path));
  const int64_t len = CodePoints(v);
  if (min_len && len < *min_len)
    return fail("is shorter than minLength " + std::to_string(*min_len));
  if (max_len && len > *max_len)
    return fail("is longer than maxLength " + std::to_string(*max_len));
  if (s.contains("pattern")) {
    if (!s["pattern"].is_string()) return Err(path, "pattern must be a string");
    auto r = ParseRegex(s["pattern"].get<std::string>(), RegexMode::kRaw);
    if (!r.ok()) return Err(path, "pattern: " + r.status().message());
    // Unanchored ends: the match may start / end at any code point boundary.
    std::vector<char> from(v.size() + 1, 0);
    for (size_t i = 0; i <= v.size(); ++i) {
      from[i] = (i == 0 || !r->anchored_start) &&
                (i == v.size() || (static_cast<uint8_t>(v[i]) & 0xC0) != 0x80);
    }
    std::vector<char> ends = Ends(*r->expr, v, from);
    bool ok = r->anchored_end ? ends[v.size()] != 0 : false;
    for (size_t i = 0; i <= v.size() && !r->anchored_end; ++i) ok = ok || ends[i];
    if (!ok) return fail("does not match pattern " + Json(s["pattern"]).dump());
  }
  if (s.contains("format")) {
    if (!s["format"].is_string()) return Err(path, "format must be a string");
    const std::string f = s["format"].get<std::string>();
    auto e = FormatExpr(f);
    if (!e) return Err(path, "unsupported format '" + f + "'");
    if (!ExprMatchesAll(*e, v)) return fail("is not a " + f + " (format) kiln can emit");
  }
  return true;
}

StatusOr<bool> ValueChecker::ValidArray(const SchemaJson& v, const SchemaJson& s,
                                        const std::string& path, int depth, std::string* why) {
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> min_items, Count(s, "minItems", path));
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> max_items, Count(s, "maxItems", path));
  const int64_t n = static_cast<int64_t>(v.size());
  if (min_items && n < *min_items) {
    *why = "has fewer items than minItems " + std::to_string(*min_items) + " (at " + path + ")";
    return false;
  }
  if (max_items && n > *max_items) {
    *why = "has more items than maxItems " + std::to_string(*max_items) + " (at " + path + ")";
    return false;
  }
  // The item schemas, as the converter reads them: prefixItems then items (2020-12), or a
  // draft-07 items array then additionalItems, or one items schema for all.
  const Json* prefix = nullptr;
  const Json* rest = nullptr;
  std::string prefix_key = "prefixItems", rest_key = "items";
  if (s.contains("prefixItems")) {
    prefix = &s["prefixItems"];
    if (s.contains("items")) rest = &s["items"];
  } else if (s.contains("items") && s["items"].is_array()) {
    prefix = &s["items"];
    prefix_key = "items";
    rest_key = "additionalItems";
    if (s.contains("additionalItems")) rest = &s["additionalItems"];
  } else if (s.contains("items")) {
    rest = &s["items"];
  }
  if (prefix && !prefix->is_array()) return Err(path, prefix_key + " must be an array");
  for (size_t i = 0; i < v.size(); ++i) {
    const bool in_prefix = prefix && i < prefix->size();
    const Json* item = in_prefix ? &(*prefix)[i] : rest;
    if (!item) continue;
    const std::string at =
        path + "/" + (in_prefix ? prefix_key + "/" + std::to_string(i) : rest_key);
    std::string w;
    KILN_ASSIGN_OR_RETURN(bool ok, ValidAt(v[i], *item, at, depth + 1, &w));
    if (!ok) {
      *why = "has item " + std::to_string(i) + " that " + w;
      return false;
    }
  }
  return true;
}

StatusOr<bool> ValueChecker::ValidObject(const SchemaJson& v, const SchemaJson& s,
                                         const std::string& path, int depth, std::string* why) {
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> min_props, Count(s, "minProperties", path));
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> max_props, Count(s, "maxProperties", path));
  const int64_t num_props = static_cast<int64_t>(v.size());
  if ((min_props && num_props < *min_props) || (max_props && num_props > *max_props)) {
    *why = "has " + std::to_string(num_props) + " properties, outside minProperties/maxProperties" +
           " (at " + path + ")";
    return false;
  }
  if (s.contains("required")) {
    if (!s["required"].is_array()) return Err(path, "required must be an array");
    for (const auto& r : s["required"]) {
      if (!r.is_string()) return Err(path, "required entries must be strings");
      if (!v.contains(r.get<std::string>())) {
        *why = "lacks required property " + r.dump() + " (at " + path + ")";
        return false;
      }
    }
  }
  if (s.contains("properties") && !s["properties"].is_object()) {
    return Err(path, "properties must be an object");
  }
  std::set<std::string> excluded;  // extra keys a oneOf proof keeps kiln from emitting
  if (s.contains(kExcludeExtraKeys) && s[kExcludeExtraKeys].is_array()) {
    for (const auto& k : s[kExcludeExtraKeys]) {
      if (k.is_string()) excluded.insert(k.get<std::string>());
    }
  }
  for (auto& [key, x] : v.items()) {
    const Json* sub = nullptr;
    std::string at;
    if (s.contains("properties") && s["properties"].contains(key)) {
      sub = &s["properties"][key];
      at = path + "/properties/" + key;
    } else if (excluded.count(key)) {
      *why = "has property \"" + key + "\", which kiln keeps out here (at " + path + ")";
      return false;
    } else if (s.contains("additionalProperties")) {
      sub = &s["additionalProperties"];
      at = path + "/additionalProperties";
    }
    if (!sub) continue;
    std::string w;
    KILN_ASSIGN_OR_RETURN(bool ok, ValidAt(x, *sub, at, depth + 1, &w));
    if (!ok) {
      *why = "has property \"" + key + "\" that " + w;
      return false;
    }
  }
  return true;
}

}  // namespace kiln::structured
