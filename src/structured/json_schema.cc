#include "structured/json_schema.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "structured/number_grammar.h"
#include "structured/regex.h"
#include "structured/schema_exclusivity.h"
#include "structured/schema_merge.h"
#include "structured/schema_value.h"

namespace kiln::structured {
namespace {

// A JSON-pointer array index (RFC 6901: digits only): false for anything else, and for numbers
// too large for size_t (a 30-digit index is "does not resolve", not an exception).
bool ParseArrayIndex(const std::string& token, size_t* index) {
  if (token.empty() || token.find_first_not_of("0123456789") != std::string::npos) return false;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), *index);
  return ec == std::errc() && end == token.data() + token.size();
}

using Json = nlohmann::ordered_json;

constexpr int kMaxStringLength = 65536;  // counted rules: a count, not states
constexpr int kMaxArrayItems = 256;
constexpr int kMaxPropertyCount = 64;  // minProperties / maxProperties: one rule per count

ExprPtr Ws() {
  static const ExprPtr e =
      Opt(Alt({Literal(" "), Seq({Literal("\n"), Repeat(Literal(" "), 0, 8)})}));
  return e;
}

class Converter {
 public:
  explicit Converter(const Json& root) : root_(root) {}

  StatusOr<Grammar> Run() {
    int root = g_.AddRule("root");
    g_.root = root;
    KILN_ASSIGN_OR_RETURN(ExprPtr body, Convert(root_, "#"));
    g_.rules[root].body = body;
    if (IsEmptyLanguage(g_)) {
      std::string what = "no JSON value satisfies the schema (empty language)";
      for (size_t i = 0; i < unsatisfiable_.size() && i < 3; ++i) {
        what += (i == 0 ? ": " : "; ") + unsatisfiable_[i];
      }
      return Err("#", what);
    }
    return std::move(g_);
  }

  Grammar AnyObject() {
    int root = g_.AddRule("root");
    g_.root = root;
    g_.rules[root].body = Ref(AnyObjectRule());
    return std::move(g_);
  }

 private:
  static Status Err(const std::string& path, const std::string& what) {
    return Status::InvalidArgument("json_schema at " + path + ": " + what);
  }

  int NewRule(const std::string& name, ExprPtr body) {
    int id = g_.AddRule(name);
    g_.rules[id].body = std::move(body);
    return id;
  }

  int StringRule() {
    if (string_rule_ < 0) {
      string_rule_ = NewRule("string", Seq({Literal("\""), Star(JsonStringChar()), Literal("\"")}));
    }
    return string_rule_;
  }

  int AnyValueRule() {
    if (any_value_rule_ >= 0) return any_value_rule_;
    any_value_rule_ = g_.AddRule("value");
    int obj = AnyObjectRule();
    int arr = g_.AddRule("array");
    ExprPtr value = Ref(any_value_rule_);
    ExprPtr sep = Seq({Ws(), Literal(","), Ws()});
    g_.rules[arr].body =
        Seq({Literal("["), Ws(), Opt(Seq({value, Star(Seq({sep, value}))})), Ws(), Literal("]")});
    g_.rules[any_value_rule_].body =
        Alt({Ref(obj), Ref(arr), Ref(StringRule()), NumberExpr({}, false), Literal("true"),
             Literal("false"), Literal("null")});
    return any_value_rule_;
  }

  int AnyObjectRule() {
    if (any_object_rule_ >= 0) return any_object_rule_;
    any_object_rule_ = g_.AddRule("object");
    int value = AnyValueRule();
    ExprPtr member = Seq({Ref(StringRule()), Ws(), Literal(":"), Ws(), Ref(value)});
    ExprPtr sep = Seq({Ws(), Literal(","), Ws()});
    g_.rules[any_object_rule_].body =
        Seq({Literal("{"), Ws(), Opt(Seq({member, Star(Seq({sep, member}))})), Ws(), Literal("}")});
    return any_object_rule_;
  }

  StatusOr<const Json*> Resolve(const std::string& ref, const std::string& path) {
    if (ref.empty() || ref[0] != '#') {
      return Err(path, "$ref '" + ref + "' is not a local reference (only '#...' is supported)");
    }
    const Json* cur = &root_;
    std::string rest = ref.substr(1);
    if (!rest.empty() && rest[0] != '/')
      return Err(path, "$ref '" + ref + "' is not a JSON pointer");
    size_t i = 0;
    while (i < rest.size()) {
      size_t j = rest.find('/', i + 1);
      if (j == std::string::npos) j = rest.size();
      std::string token = rest.substr(i + 1, j - i - 1);
      std::string unescaped;
      for (size_t k = 0; k < token.size(); ++k) {
        if (token[k] == '~' && k + 1 < token.size()) {
          unescaped += token[k + 1] == '1' ? '/' : '~';
          ++k;
        } else {
          unescaped += token[k];
        }
      }
      if (cur->is_object() && cur->contains(unescaped)) {
        cur = &(*cur)[unescaped];
      } else if (size_t index = 0;
                 cur->is_array() && ParseArrayIndex(unescaped, &index) && index < cur->size()) {
        cur = &(*cur)[index];
      } else {
        return Err(path, "$ref '" + ref + "' does not resolve");
      }
      i = j;
    }
    return cur;
  }

  StatusOr<int> RefRule(const std::string& ref, const std::string& path) {
    auto it = ref_rules_.find(ref);
    if (it != ref_rules_.end()) return it->second;
    KILN_ASSIGN_OR_RETURN(const Json* target, Resolve(ref, path));
    int id = g_.AddRule("ref" + std::to_string(ref_rules_.size()));
    ref_rules_[ref] = id;
    if (++depth_ > 200) return Err(path, "schema nesting too deep");
    KILN_ASSIGN_OR_RETURN(ExprPtr body, Convert(*target, ref));
    --depth_;
    g_.rules[id].body = body;
    return id;
  }

  // allOf: merges `b` into `a` (schema_merge.h).
  Status Merge(Json* a, const Json& b, const std::string& path) {
    return MergeSchemas(a, b, Resolver(path), path);
  }

  SchemaRefResolver Resolver(const std::string& path) {
    return [this, path](const std::string& ref) { return Resolve(ref, path); };
  }

  static std::string BranchPath(const std::string& path, const char* comb, size_t i) {
    return path + "/" + comb + "/" + std::to_string(i);
  }

  // oneOf = exactly one branch. Compiled as a union only when no value kiln generates for one
  // branch is valid under another (schema_exclusivity.h); some proofs need kiln to leave a key
  // out of a branch's extra properties, which is recorded in that branch's schema.
  Status MakeOneOfExclusive(const Json& branches, std::vector<Json>* generated,
                            const std::string& path) {
    ExclusivityProver prover([this, &path](Json* a, const Json& b) { return Merge(a, b, path); },
                             &proof_budget_);
    for (size_t i = 0; i < generated->size(); ++i) {
      std::set<std::string> exclude;
      for (size_t j = 0; j < branches.size(); ++j) {
        if (j == i || prover.NoGeneratedValueIsValid((*generated)[i], branches[j], &exclude)) {
          continue;
        }
        if (prover.exhausted()) {
          return Err(path, "oneOf: could not prove branches " + std::to_string(std::min(i, j)) +
                               " and " + std::to_string(std::max(i, j)) +
                               " exclusive within the proof budget (oneOf requires exactly one "
                               "match) — use anyOf if a value may match several");
        }
        return Err(path, "oneOf branches " + std::to_string(std::min(i, j)) + " and " +
                             std::to_string(std::max(i, j)) +
                             " may both match the same value (oneOf requires exactly one); kiln "
                             "compiles oneOf only when its branches are provably exclusive (e.g. "
                             "different types, disjoint const/enum values or ranges, a "
                             "discriminator property) — use anyOf if a value may match several");
      }
      if (exclude.empty()) continue;
      Json restricted = Json::object();  // $ref / allOf inlined, so the object rule is this one
      KILN_RETURN_IF_ERROR(Merge(&restricted, (*generated)[i], BranchPath(path, "oneOf", i)));
      restricted[kExcludeExtraKeys] = Json(exclude);
      (*generated)[i] = std::move(restricted);
    }
    return Status::Ok();
  }

  StatusOr<ExprPtr> Convert(const Json& schema, const std::string& path) {
    if (++depth_ > 200) return Err(path, "schema nesting too deep");
    auto result = ConvertImpl(schema, path);
    --depth_;
    return result;
  }

  StatusOr<ExprPtr> ConvertImpl(const Json& schema, const std::string& path) {
    if (schema.is_boolean()) return schema.get<bool>() ? Ref(AnyValueRule()) : Nothing();
    if (!schema.is_object()) return Err(path, "a schema must be an object or a boolean");
    if (schema.contains("unevaluatedProperties")) {
      Json lowered = schema;
      // Left in place next to applicators: the allOf merge or the anyOf/oneOf branches take it.
      if (!LowerUnevaluatedProperties(&lowered)) return ConvertImpl(lowered, path);
    }
    for (auto& [key, value] : schema.items()) {
      if (IgnoredKeywords().count(key)) continue;
      if (key == "not_satisfiable") {
        if (value.is_string()) unsatisfiable_.push_back(path + ": " + value.get<std::string>());
        return Nothing();
      }
      if (!SupportedKeywords().count(key)) {
        return Err(path, "unsupported keyword '" + key + "'");
      }
    }
    if (schema.contains("uniqueItems") && schema["uniqueItems"] != false) {
      return Err(path, "unsupported keyword 'uniqueItems' (true)");
    }
    // Combinators with sibling keywords: siblings apply to every branch (allOf semantics).
    Json siblings = Json::object();
    for (auto& [key, value] : schema.items()) {
      if (key != "anyOf" && key != "oneOf" && key != "allOf" && key != "$ref" &&
          !IgnoredKeywords().count(key)) {
        siblings[key] = value;
      }
    }
    if (schema.contains("allOf") || (schema.contains("$ref") && !siblings.empty())) {
      Json merged = Json::object();
      Json rest = schema;
      KILN_RETURN_IF_ERROR(Merge(&merged, rest, path));
      return Convert(merged, path + "/allOf");
    }
    if (schema.contains("$ref")) {
      if (!schema["$ref"].is_string()) return Err(path, "$ref must be a string");
      if (schema.contains("anyOf") || schema.contains("oneOf")) {
        Json merged = Json::object();
        KILN_RETURN_IF_ERROR(Merge(&merged, Json{{"$ref", schema["$ref"]}}, path));
        Json rest = schema;
        rest.erase("$ref");
        for (auto& [k, v] : merged.items()) rest[k] = v;
        return Convert(rest, path);
      }
      KILN_ASSIGN_OR_RETURN(int rule, RefRule(schema["$ref"].get<std::string>(), path));
      return Ref(rule);
    }
    if (schema.contains("anyOf") && schema.contains("oneOf")) {
      return Err(path, "anyOf and oneOf in the same schema are not supported (wrap one in allOf)");
    }
    for (const char* comb : {"anyOf", "oneOf"}) {
      if (!schema.contains(comb)) continue;
      const Json& branches = schema[comb];
      if (!branches.is_array() || branches.empty()) {
        return Err(path, std::string(comb) + " must be a non-empty array");
      }
      // What kiln generates for branch i: the branch with the sibling keywords merged in.
      std::vector<Json> generated;
      for (size_t i = 0; i < branches.size(); ++i) {
        if (siblings.empty()) {
          generated.push_back(branches[i]);
        } else {
          Json merged = siblings;
          KILN_RETURN_IF_ERROR(Merge(&merged, branches[i], BranchPath(path, comb, i)));
          generated.push_back(std::move(merged));
        }
      }
      if (std::string(comb) == "oneOf") {
        KILN_RETURN_IF_ERROR(MakeOneOfExclusive(branches, &generated, path));
      }
      std::vector<ExprPtr> alts;
      for (size_t i = 0; i < branches.size(); ++i) {
        KILN_ASSIGN_OR_RETURN(ExprPtr e, Convert(generated[i], BranchPath(path, comb, i)));
        alts.push_back(e);
      }
      return Alt(std::move(alts));
    }
    // enum / const: the values valid under every other keyword too (schema_value.h).
    if (schema.contains("const") || schema.contains("enum")) {
      std::vector<std::string> dropped;
      KILN_ASSIGN_OR_RETURN(std::vector<Json> values,
                            ValueChecker(Resolver(path)).AllowedValues(schema, path, &dropped));
      if (values.empty()) {
        std::string why = dropped.empty() ? "the enum is empty" : dropped[0];
        if (dropped.size() > 1) why += ", and " + std::to_string(dropped.size() - 1) + " more";
        unsatisfiable_.push_back(path + ": no " + (schema.contains("const") ? "const" : "enum") +
                                 " value satisfies the schema's other keywords (" + why + ")");
        return Nothing();
      }
      std::vector<ExprPtr> alts;
      for (const auto& v : values) alts.push_back(Literal(v.dump()));
      return Alt(std::move(alts));
    }
    std::vector<std::string> types;
    if (schema.contains("type")) {
      const Json& t = schema["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array()) {
        for (const auto& x : t) {
          if (!x.is_string()) return Err(path, "type entries must be strings");
          types.push_back(x.get<std::string>());
        }
      } else {
        return Err(path, "type must be a string or an array");
      }
    } else {
      auto has = [&](std::initializer_list<const char*> keys) {
        for (const char* k : keys) {
          if (schema.contains(k)) return true;
        }
        return false;
      };
      if (has({"properties", "required", "additionalProperties", "minProperties",
               "maxProperties"})) {
        types.push_back("object");
      }
      if (has({"items", "prefixItems", "minItems", "maxItems", "additionalItems"})) {
        types.push_back("array");
      }
      if (has({"minLength", "maxLength", "pattern", "format"})) types.push_back("string");
      if (has({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})) {
        types.push_back("number");
      }
      if (types.empty()) return Ref(AnyValueRule());
    }
    if (schema.value("nullable", false)) types.push_back("null");
    std::vector<ExprPtr> alts;
    for (const auto& t : types) {
      KILN_ASSIGN_OR_RETURN(ExprPtr e, TypeExpr(t, schema, path));
      alts.push_back(e);
    }
    return Alt(std::move(alts));
  }

  StatusOr<ExprPtr> TypeExpr(const std::string& type, const Json& s, const std::string& path) {
    if (type == "null") return Literal("null");
    if (type == "boolean") return Alt({Literal("true"), Literal("false")});
    if (type == "integer" || type == "number") {
      KILN_ASSIGN_OR_RETURN(NumberBounds b, ParseNumberBounds(s, path));
      // Bounds beyond ±10^15 are treated as open (numbers have at most 15 integer digits), which
      // is sound only on the far side: a minimum of 10^15 or more would let 0 through.
      if ((b.lo && *b.lo >= static_cast<double>(kNumberBoundLimit)) ||
          (b.hi && *b.hi <= -static_cast<double>(kNumberBoundLimit))) {
        return Err(path,
                   "a minimum at or above 1e15 (or a maximum at or below -1e15) is not "
                   "supported");
      }
      if (s.contains("multipleOf")) {
        const Json& m = s["multipleOf"];
        if (!m.is_number() || !(m.get<double>() > 0)) {
          return Err(path, "multipleOf must be a number greater than 0");
        }
        auto e = MultipleOfExpr(b, m.get<double>(), type == "integer");
        if (!e.ok()) return Err(path, e.status().message());
        return *e;
      }
      ExprPtr e = NumberExpr(b, type == "integer");
      const bool range_has_values =
          b.lo && b.hi && (*b.lo < *b.hi || (*b.lo == *b.hi && !b.lo_exclusive && !b.hi_exclusive));
      if (type == "number" && e->kind == Expr::Kind::kNothing && range_has_values) {
        return Err(path,
                   "no number in this range can be written with at most 15 integer and 16 "
                   "fraction digits (exponents are not supported with bounds)");
      }
      return e;
    }
    if (type == "string") return StringExpr(s, path);
    if (type == "array") return ArrayExpr(s, path);
    if (type == "object") return ObjectExpr(s, path);
    return Err(path, "unknown type '" + type + "'");
  }

  StatusOr<int> IntKeyword(const Json& s, const char* key, int dflt, int limit,
                           const std::string& path) {
    if (!s.contains(key)) return dflt;
    if (!s[key].is_number_integer() || s[key].get<int64_t>() < 0) {
      return Err(path, std::string(key) + " must be a non-negative integer");
    }
    int64_t v = s[key].get<int64_t>();
    if (v > limit) {
      return Err(path, std::string(key) + " " + std::to_string(v) + " above the supported " +
                           std::to_string(limit));
    }
    return static_cast<int>(v);
  }

  StatusOr<ExprPtr> StringExpr(const Json& s, const std::string& path) {
    bool has_len = s.contains("minLength") || s.contains("maxLength");
    int min_len = 0, max_len = -1;
    if (s.contains("minLength")) {
      KILN_ASSIGN_OR_RETURN(min_len, IntKeyword(s, "minLength", 0, kMaxStringLength, path));
    }
    if (s.contains("maxLength")) {
      if (s["maxLength"].is_number_integer() && s["maxLength"].get<int64_t>() > kMaxStringLength &&
          !s.contains("minLength")) {
        max_len = -1;  // a generous cap above the supported count: enforced below by rejecting
        return Err(path, "maxLength " + s["maxLength"].dump() + " above the supported " +
                             std::to_string(kMaxStringLength));
      }
      KILN_ASSIGN_OR_RETURN(max_len, IntKeyword(s, "maxLength", -1, kMaxStringLength, path));
    }
    // The string literal's content: a format, a pattern, or any characters.
    ExprPtr content;
    std::string key;  // shares identical rules within the schema
    if (s.contains("format")) {
      if (!s["format"].is_string()) return Err(path, "format must be a string");
      std::string f = s["format"].get<std::string>();
      auto e = FormatExpr(f);
      if (!e) return Err(path, "unsupported format '" + f + "'");
      if (s.contains("pattern")) {
        return Err(path, "format combined with pattern is not supported");
      }
      content = *e;
      key = "format:" + f;
    } else if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) return Err(path, "pattern must be a string");
      auto r = ParseRegex(s["pattern"].get<std::string>(), RegexMode::kJsonString);
      if (!r.ok()) return Err(path, "pattern: " + r.status().message());
      std::vector<ExprPtr> seq;
      if (!r->anchored_start) seq.push_back(Star(JsonStringChar()));
      seq.push_back(r->expr);
      if (!r->anchored_end) seq.push_back(Star(JsonStringChar()));
      content = Seq(std::move(seq));
      key = "pattern:" + s["pattern"].get<std::string>();
    } else if (has_len) {
      content = Star(JsonStringChar());
      key = "string";
    } else {
      return Ref(StringRule());
    }
    if (max_len >= 0 && max_len < min_len) return Nothing();
    if (has_len) key += ":" + std::to_string(min_len) + ":" + std::to_string(max_len);
    auto it = string_rules_.find(key);
    if (it != string_rules_.end()) return Ref(it->second);
    // A rule of its own: a leaf rule (fast token tables). Length bounds make it a counted rule
    // (grammar.h): the matcher counts characters, no automaton state per count.
    int id = NewRule("string_" + std::to_string(string_rules_.size()),
                     Seq({Literal("\""), content, Literal("\"")}));
    if (has_len) {
      g_.rules[id].counted = true;
      g_.rules[id].min_chars = min_len;
      g_.rules[id].max_chars = max_len;
    }
    string_rules_[key] = id;
    return Ref(id);
  }

  StatusOr<ExprPtr> ArrayExpr(const Json& s, const std::string& path) {
    KILN_ASSIGN_OR_RETURN(int min_items, IntKeyword(s, "minItems", 0, kMaxArrayItems, path));
    int max_items = -1;
    if (s.contains("maxItems")) {
      if (s["maxItems"].is_number_integer() && s["maxItems"].get<int64_t>() > kMaxArrayItems) {
        max_items = -1;  // above the expansion limit: treated as unbounded only if no min needs it
        return Err(path, "maxItems " + s["maxItems"].dump() + " above the supported " +
                             std::to_string(kMaxArrayItems));
      }
      KILN_ASSIGN_OR_RETURN(max_items, IntKeyword(s, "maxItems", -1, kMaxArrayItems, path));
    }
    std::vector<ExprPtr> prefix;
    const Json* prefix_json = nullptr;
    const Json* rest_json = nullptr;  // schema of items after the prefix; null = any
    bool rest_forbidden = false;
    if (s.contains("prefixItems")) {
      prefix_json = &s["prefixItems"];
      if (s.contains("items")) {
        if (s["items"] == false) {
          rest_forbidden = true;
        } else {
          rest_json = &s["items"];
        }
      }
    } else if (s.contains("items") && s["items"].is_array()) {
      prefix_json = &s["items"];
      if (s.contains("additionalItems")) {
        if (s["additionalItems"] == false) {
          rest_forbidden = true;
        } else {
          rest_json = &s["additionalItems"];
        }
      }
    } else if (s.contains("items")) {
      if (s["items"] == false) {
        rest_forbidden = true;
      } else {
        rest_json = &s["items"];
      }
    }
    if (prefix_json) {
      if (!prefix_json->is_array()) return Err(path, "prefixItems must be an array");
      for (size_t i = 0; i < prefix_json->size(); ++i) {
        KILN_ASSIGN_OR_RETURN(
            ExprPtr e, Convert((*prefix_json)[i], path + "/prefixItems/" + std::to_string(i)));
        prefix.push_back(e);
      }
    }
    ExprPtr rest;
    if (!rest_forbidden) {
      if (rest_json) {
        KILN_ASSIGN_OR_RETURN(rest, Convert(*rest_json, path + "/items"));
        // A counted repetition copies an inline item's states per count: call it instead.
        if (rest->kind != Expr::Kind::kRef && rest->kind != Expr::Kind::kNothing &&
            (max_items > 2 || min_items > 2)) {
          rest = Ref(NewRule("item" + std::to_string(g_.rules.size()), rest));
        }
      } else {
        rest = Ref(AnyValueRule());
      }
    }
    const int k = static_cast<int>(prefix.size());
    if (rest_forbidden) max_items = max_items < 0 ? k : std::min(max_items, k);
    if (max_items >= 0 && max_items < min_items) return Nothing();
    ExprPtr sep = Seq({Ws(), Literal(","), Ws()});
    // Items k+1.. (all `rest`), given that `done` items precede: sep-separated repetitions.
    auto tail_after = [&](int done) -> ExprPtr {
      if (!rest) return Empty();
      int lo = std::max(0, min_items - done);
      int hi = max_items < 0 ? -1 : max_items - done;
      if (hi == 0) return Empty();
      return Repeat(Seq({sep, rest}), lo, hi);
    };
    // Builds items i.. (0-based) given i items precede (i >= 1).
    std::function<ExprPtr(int)> after = [&](int i) -> ExprPtr {
      if (max_items >= 0 && i >= max_items) return Empty();
      if (i >= k) return tail_after(i);
      ExprPtr next = Seq({sep, prefix[i], after(i + 1)});
      return i < min_items ? next : Opt(next);
    };
    ExprPtr items;
    if (max_items == 0) {
      items = Empty();
    } else {
      ExprPtr first = k > 0 ? prefix[0] : rest;
      if (!first) {
        items = Empty();
      } else {
        ExprPtr nonempty = Seq({first, after(1)});
        items = min_items >= 1 ? nonempty : Opt(nonempty);
      }
    }
    std::string name = "array" + std::to_string(g_.rules.size());
    return Ref(NewRule(name, Seq({Literal("["), Ws(), items, Ws(), Literal("]")})));
  }

  // Content bytes of JSON strings different from every key in `keys` (encoded forms, no quotes).
  ExprPtr KeyExcluding(const std::vector<std::string>& keys) {
    bool ascii_only = true;
    for (const auto& k : keys) {
      for (char c : k) {
        uint8_t b = static_cast<uint8_t>(c);
        if (b >= 0x80 || c == '\\') ascii_only = false;
      }
    }
    std::bitset<256> plain;
    for (int c = 0x20; c < 0x80; ++c) {
      if (c != '"' && c != '\\') plain.set(c);
    }
    // Extra keys never use escapes, so their encoding is unique; with non-ASCII listed keys they
    // are plain ASCII only (then they can equal only ASCII keys, which the trie excludes).
    ExprPtr non_ascii = ascii_only ? Utf8Class({{0x80, 0x10FFFF}}) : Nothing();
    ExprPtr atom = Alt({Bytes(plain), non_ascii});
    std::vector<std::string> trie_keys;
    for (const auto& k : keys) {
      bool plain_key = true;
      for (char c : k) plain_key &= plain.test(static_cast<uint8_t>(c));
      if (plain_key) trie_keys.push_back(k);
    }
    std::function<ExprPtr(const std::string&)> build = [&](const std::string& prefix) -> ExprPtr {
      std::bitset<256> children;
      bool is_key = false;
      for (const auto& k : trie_keys) {
        if (k.compare(0, prefix.size(), prefix) != 0) continue;
        if (k.size() == prefix.size()) {
          is_key = true;
        } else {
          children.set(static_cast<uint8_t>(k[prefix.size()]));
        }
      }
      std::vector<ExprPtr> alts;
      if (!is_key) alts.push_back(Empty());
      alts.push_back(Seq({Alt({Bytes(plain & ~children), non_ascii}), Star(atom)}));
      for (int c = 0; c < 256; ++c) {
        if (children.test(c)) {
          alts.push_back(Seq({ByteRange(c, c), build(prefix + static_cast<char>(c))}));
        }
      }
      return Alt(std::move(alts));
    };
    return build("");
  }

  StatusOr<ExprPtr> ObjectExpr(const Json& s, const std::string& path) {
    struct Prop {
      std::string key;
      ExprPtr value;
      bool required;
    };
    std::vector<Prop> props;
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) return Err(path, "required must be an array");
      for (const auto& r : s["required"]) {
        if (!r.is_string()) return Err(path, "required entries must be strings");
        required.insert(r.get<std::string>());
      }
    }
    std::set<std::string> listed;
    if (s.contains("properties")) {
      if (!s["properties"].is_object()) return Err(path, "properties must be an object");
      for (auto& [key, sub] : s["properties"].items()) {
        KILN_ASSIGN_OR_RETURN(ExprPtr v, Convert(sub, path + "/properties/" + key));
        bool req = required.count(key) > 0;
        if (v->kind == Expr::Kind::kNothing) {
          if (req) {
            unsatisfiable_.push_back(path + ": required property '" + key +
                                     "' can have no value (e.g. an allOf member's "
                                     "additionalProperties: false forbids it)");
            return Nothing();
          }
          listed.insert(key);  // a property that can have no value is absent, never an extra key
          continue;
        }
        props.push_back({key, v, req});
        listed.insert(key);
      }
    }
    // Additional properties: schema (null when forbidden).
    ExprPtr extra_value;
    if (!s.contains("additionalProperties") || s["additionalProperties"] == false) {
      extra_value = nullptr;
    } else {
      KILN_ASSIGN_OR_RETURN(extra_value,
                            Convert(s["additionalProperties"], path + "/additionalProperties"));
      if (extra_value->kind == Expr::Kind::kNothing) extra_value = nullptr;
    }
    // Required keys not among the properties take the additionalProperties schema.
    for (const auto& r : required) {
      if (listed.count(r)) continue;
      if (s.contains("additionalProperties") && s["additionalProperties"] == false) {
        return Err(path, "required property '" + r + "' is not allowed by the schema");
      }
      props.push_back({r, extra_value ? extra_value : Ref(AnyValueRule()), true});
      listed.insert(r);
    }
    auto key_lit = [](const std::string& key) { return Literal(Json(key).dump()); };
    ExprPtr colon = Seq({Ws(), Literal(":"), Ws()});
    ExprPtr sep = Seq({Ws(), Literal(","), Ws()});
    std::vector<ExprPtr> pexpr;
    for (const auto& p : props) pexpr.push_back(Seq({key_lit(p.key), colon, p.value}));
    ExprPtr extra;
    if (extra_value) {
      std::set<std::string> excluded = listed;  // listed keys, and keys a oneOf keeps out
      if (s.contains(kExcludeExtraKeys) && s[kExcludeExtraKeys].is_array()) {
        for (const auto& k : s[kExcludeExtraKeys]) {
          if (k.is_string()) excluded.insert(k.get<std::string>());
        }
      }
      std::vector<std::string> encoded;
      for (const auto& k : excluded) {
        std::string d = Json(k).dump();
        encoded.push_back(d.substr(1, d.size() - 2));
      }
      // The key is a leaf rule of its own: its token tables are then computed by the fast walk.
      ExprPtr key = excluded.empty()
                        ? Ref(StringRule())
                        : Ref(NewRule("other_key",
                                      Seq({Literal("\""), KeyExcluding(encoded), Literal("\"")})));
      extra = Seq({key, colon, extra_value});
    }
    const int n = static_cast<int>(props.size());
    const std::string name = "object" + std::to_string(g_.rules.size());
    if (s.contains("minProperties") || s.contains("maxProperties")) {
      KILN_ASSIGN_OR_RETURN(
          ExprPtr body, CountedMembers(s, pexpr, props_required(props), extra, sep, name, path));
      return Ref(NewRule(name, Seq({Literal("{"), Ws(), body, Ws(), Literal("}")})));
    }
    // rest[i]: properties i.. each preceded by a separator, then extras.
    std::vector<ExprPtr> rest(n + 1);
    rest[n] = extra ? Star(Seq({sep, extra})) : Empty();
    for (int i = n - 1; i >= 0; --i) {
      ExprPtr one = Seq({sep, pexpr[i]});
      rest[i] = Seq({props[i].required ? one : Opt(one), rest[i + 1]});
    }
    std::vector<ExprPtr> firsts;
    bool all_optional = true;
    for (int i = 0; i < n; ++i) {
      firsts.push_back(Seq({pexpr[i], rest[i + 1]}));
      if (props[i].required) {
        all_optional = false;
        break;
      }
    }
    if (all_optional) {
      if (extra) firsts.push_back(Seq({extra, Star(Seq({sep, extra}))}));
      firsts.push_back(Empty());
    }
    return Ref(
        NewRule(name, Seq({Literal("{"), Ws(), Alt(std::move(firsts)), Ws(), Literal("}")})));
  }

  template <typename P>
  static std::vector<bool> props_required(const std::vector<P>& props) {
    std::vector<bool> out;
    for (const auto& p : props) out.push_back(p.required);
    return out;
  }

  // The members of an object with minProperties / maxProperties: rule rest(i, c) = properties i..
  // (each after a separator) then extras, given c members so far (counts saturate at
  // minProperties when there is no maximum), so the count is exact.
  StatusOr<ExprPtr> CountedMembers(const Json& s, const std::vector<ExprPtr>& pexpr,
                                   const std::vector<bool>& required, const ExprPtr& extra,
                                   const ExprPtr& sep, const std::string& name,
                                   const std::string& path) {
    const int n = static_cast<int>(pexpr.size());
    KILN_ASSIGN_OR_RETURN(int min_props,
                          IntKeyword(s, "minProperties", 0, kMaxPropertyCount, path));
    int max_props = -1;
    if (s.contains("maxProperties")) {
      const Json& m = s["maxProperties"];
      if (!m.is_number_integer() || m.get<int64_t>() < 0) {
        return Err(path, "maxProperties must be a non-negative integer");
      }
      if (m.get<int64_t>() > kMaxPropertyCount) {
        if (extra || m.get<int64_t>() < n) {
          return Err(path, "maxProperties " + m.dump() + " above the supported " +
                               std::to_string(kMaxPropertyCount));
        }
      } else {
        max_props = static_cast<int>(m.get<int64_t>());
      }
    }
    if (max_props >= 0 && max_props < min_props) return Nothing();
    const int cap = max_props >= 0 ? max_props : min_props;
    auto sat = [&](int c) { return max_props >= 0 ? c : std::min(c, cap); };
    const ExprPtr extra_ref = extra ? Ref(NewRule(name + "_extra", extra)) : nullptr;
    std::map<std::pair<int, int>, int> rules;
    std::function<ExprPtr(int, int)> rest = [&](int i, int c) -> ExprPtr {
      if (max_props >= 0 && c > max_props) return Nothing();
      auto it = rules.find({i, c});
      if (it != rules.end()) return Ref(it->second);
      const int id = g_.AddRule(name + "_" + std::to_string(i) + "_" + std::to_string(c));
      rules[{i, c}] = id;
      ExprPtr body;
      if (i == n) {
        // Extras one per rule (the count moves on), so no rule repeats the member's states.
        ExprPtr done = c >= min_props ? Empty() : Nothing();
        if (extra && (max_props < 0 || c < max_props)) {
          body = Alt({done, Seq({sep, extra_ref, rest(n, sat(c + 1))})});
        } else {
          body = done;
        }
      } else {
        ExprPtr take = Seq({sep, pexpr[i], rest(i + 1, sat(c + 1))});
        body = required[i] ? take : Alt({take, rest(i + 1, c)});
      }
      g_.rules[id].body = body;
      return Ref(id);
    };
    std::vector<ExprPtr> firsts;
    bool all_optional = true;
    for (int i = 0; i < n; ++i) {
      if (max_props != 0) firsts.push_back(Seq({pexpr[i], rest(i + 1, sat(1))}));
      if (required[i]) {
        all_optional = false;
        break;
      }
    }
    if (all_optional) {
      if (extra && max_props != 0) firsts.push_back(Seq({extra_ref, rest(n, sat(1))}));
      if (min_props == 0) firsts.push_back(Empty());
    }
    return Alt(std::move(firsts));
  }

  const Json& root_;
  Grammar g_;
  int string_rule_ = -1;
  int any_value_rule_ = -1;
  int any_object_rule_ = -1;
  int depth_ = 0;
  int64_t proof_budget_ = ExclusivityProver::kProofBudget;  // oneOf proofs, whole schema
  std::map<std::string, int> ref_rules_;
  std::map<std::string, int> string_rules_;  // format / pattern / length rules by key
  std::vector<std::string> unsatisfiable_;   // enum/const schemas left with no value, and why
};

}  // namespace

StatusOr<Grammar> JsonSchemaToGrammar(std::string_view schema_json) {
  Json schema = Json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded()) return Status::InvalidArgument("json_schema: not valid JSON");
  return Converter(schema).Run();
}

Grammar AnyJsonObjectGrammar() {
  static const Json kEmpty = Json::object();
  return Converter(kEmpty).AnyObject();
}

}  // namespace kiln::structured
