#include "structured/schema_merge.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "structured/schema_value.h"

namespace kiln::structured {
namespace {

using Json = SchemaJson;

constexpr int kMaxDepth = 32;

Status Err(const std::string& path, const std::string& what) {
  return Status::InvalidArgument("json_schema at " + path + ": " + what);
}

bool IsTrue(const Json& s) { return s == true || (s.is_object() && s.empty()); }

// Values valid under both `x` and `y`.
Json Conjunction(const Json& x, const Json& y) {
  if (IsTrue(x) || x == y) return y;
  if (IsTrue(y)) return x;
  if (x == false || y == false) return false;
  return Json{{"allOf", Json::array({x, y})}};
}

// Schema of `key`'s value under `s` (JSON Schema: absent additionalProperties = any value).
Json KeySchema(const Json& s, const std::string& key) {
  if (s.contains("properties") && s["properties"].is_object() && s["properties"].contains(key)) {
    return s["properties"][key];
  }
  return s.contains("additionalProperties") ? s["additionalProperties"] : Json(true);
}

// properties + additionalProperties of `b` merged into `*a`, key by key (see the header).
Status MergeObjectKeys(Json* a, const Json& b, const std::string& path) {
  if (!b.contains("properties") && !b.contains("additionalProperties")) return Status::Ok();
  for (const Json* s : {static_cast<const Json*>(a), &b}) {
    if (s->contains("properties") && !(*s)["properties"].is_object()) {
      return Err(path, "properties must be an object");
    }
  }
  Json props = Json::object();
  for (const Json* s : {static_cast<const Json*>(a), &b}) {
    if (!s->contains("properties")) continue;
    for (auto& [k, unused] : (*s)["properties"].items()) {
      if (!props.contains(k)) props[k] = Conjunction(KeySchema(*a, k), KeySchema(b, k));
    }
  }
  const bool any_extra = a->contains("additionalProperties") || b.contains("additionalProperties");
  Json extra = Conjunction(a->value("additionalProperties", Json(true)),
                           b.value("additionalProperties", Json(true)));
  if (!props.empty()) (*a)["properties"] = std::move(props);
  if (any_extra) (*a)["additionalProperties"] = std::move(extra);
  return Status::Ok();
}

// Item schemas: a prefix (position by position), then the schema of every later item.
struct Items {
  std::vector<Json> prefix;
  Json rest = true;
  const Json& At(size_t i) const { return i < prefix.size() ? prefix[i] : rest; }
};

StatusOr<Items> ItemsOf(const Json& s, const std::string& path) {
  Items r;
  const Json* prefix = nullptr;
  if (s.contains("prefixItems")) {
    prefix = &s["prefixItems"];
    if (s.contains("items")) r.rest = s["items"];
  } else if (s.contains("items") && s["items"].is_array()) {
    prefix = &s["items"];
    if (s.contains("additionalItems")) r.rest = s["additionalItems"];
  } else if (s.contains("items")) {
    r.rest = s["items"];
  }
  if (prefix) {
    if (!prefix->is_array()) return Err(path, "prefixItems must be an array");
    r.prefix.assign(prefix->begin(), prefix->end());
  }
  return r;
}

// Array item keywords of `b` merged into `*a`, position by position (2020-12 form).
Status MergeItems(Json* a, const Json& b, const std::string& path) {
  auto has_items = [](const Json& s) {
    return s.contains("items") || s.contains("prefixItems") || s.contains("additionalItems");
  };
  if (!has_items(b)) return Status::Ok();
  KILN_ASSIGN_OR_RETURN(Items ia, ItemsOf(*a, path));
  KILN_ASSIGN_OR_RETURN(Items ib, ItemsOf(b, path));
  Items m;
  for (size_t i = 0; i < std::max(ia.prefix.size(), ib.prefix.size()); ++i) {
    m.prefix.push_back(Conjunction(ia.At(i), ib.At(i)));
  }
  m.rest = Conjunction(ia.rest, ib.rest);
  for (const char* k : {"items", "prefixItems", "additionalItems"}) a->erase(k);
  if (!m.prefix.empty()) (*a)["prefixItems"] = Json(m.prefix);
  if (!IsTrue(m.rest)) (*a)["items"] = m.rest;
  return Status::Ok();
}

// "type" with OpenAPI "nullable" folded in (null is valid only where both sides allow it): the
// types valid under both. False when neither side has a "type" (nullable then has no effect).
bool MergeTypes(Json* a, const Json& b) {
  auto types = [](const Json& s) -> std::optional<Json> {
    if (!s.contains("type")) return std::nullopt;
    Json t = s["type"].is_array() ? s["type"] : Json::array({s["type"]});
    if (s.contains("nullable") && s["nullable"] == true &&
        std::find(t.begin(), t.end(), "null") == t.end()) {
      t.push_back("null");
    }
    return t;
  };
  const std::optional<Json> ta = types(*a), tb = types(b);
  if (!ta && !tb) return false;
  Json both = Json::array();
  if (!ta || !tb) {
    both = ta ? *ta : *tb;
  } else {
    auto has = [](const Json& t, const char* x) {
      return std::find(t.begin(), t.end(), x) != t.end();
    };
    for (const auto& t : *ta) {
      Json common;
      if (has(*tb, t.is_string() ? t.get<std::string>().c_str() : "")) {
        common = t;
      } else if ((t == "number" && has(*tb, "integer")) || (t == "integer" && has(*tb, "number"))) {
        common = "integer";
      }
      if (!common.is_null() && !has(both, common.get<std::string>().c_str()))
        both.push_back(common);
    }
  }
  a->erase("nullable");
  if (both.empty()) {
    (*a)["not_satisfiable"] =
        "the types " + ta->dump() + " and " + tb->dump() + " do not intersect";
  } else {
    (*a)["type"] = both.size() == 1 ? both[0] : both;
  }
  return true;
}

}  // namespace

bool LowerUnevaluatedProperties(SchemaJson* s) {
  if (!s->is_object() || !s->contains("unevaluatedProperties")) return false;
  if (s->contains("additionalProperties")) {
    s->erase("unevaluatedProperties");
    return false;
  }
  for (const char* k : {"allOf", "anyOf", "oneOf", "$ref"}) {
    if (s->contains(k)) return true;
  }
  (*s)["additionalProperties"] = (*s)["unevaluatedProperties"];
  s->erase("unevaluatedProperties");
  return false;
}

namespace {

Status Merge(Json* a, const Json& b_in, const SchemaRefResolver& resolve, const std::string& path,
             int depth) {
  if (depth > kMaxDepth) return Err(path, "allOf nesting too deep");
  if (b_in.is_boolean()) {
    if (b_in.get<bool>()) return Status::Ok();
    (*a)["not_satisfiable"] = "a member is the schema false";
    return Status::Ok();
  }
  if (!b_in.is_object()) return Err(path, "allOf member is not a schema object");
  Json b = b_in;
  // unevaluatedProperties next to applicators sees the keys of all of them: applied to the whole
  // merge, which must then be this schema alone.
  std::optional<Json> unevaluated;
  if (LowerUnevaluatedProperties(&b)) {
    if (!a->empty()) {
      return Err(path,
                 "unevaluatedProperties in an allOf member that has allOf/anyOf/oneOf/$ref "
                 "itself is not supported");
    }
    unevaluated = b["unevaluatedProperties"];
    b.erase("unevaluatedProperties");
  }
  if (b.contains("$ref")) {
    if (!b["$ref"].is_string()) return Err(path, "$ref must be a string");
    KILN_ASSIGN_OR_RETURN(const Json* target, resolve(b["$ref"].get<std::string>()));
    b.erase("$ref");
    KILN_RETURN_IF_ERROR(Merge(a, *target, resolve, path, depth + 1));
  }
  if (b.contains("allOf")) {
    Json members = b["allOf"];
    b.erase("allOf");
    if (!members.is_array()) return Err(path, "allOf must be an array");
    for (const auto& m : members) KILN_RETURN_IF_ERROR(Merge(a, m, resolve, path, depth + 1));
  }
  KILN_RETURN_IF_ERROR(MergeObjectKeys(a, b, path));
  KILN_RETURN_IF_ERROR(MergeItems(a, b, path));
  const bool types_merged = MergeTypes(a, b);
  for (auto& [key, value] : b.items()) {
    if (IgnoredKeywords().count(key) || key == "properties" || key == "additionalProperties" ||
        key == "items" || key == "prefixItems" || key == "additionalItems" ||
        (types_merged && (key == "type" || key == "nullable"))) {
      continue;
    }
    if (!a->contains(key)) {
      (*a)[key] = value;
      continue;
    }
    Json& av = (*a)[key];
    if (av == value) continue;
    if (key == "required") {
      for (const auto& r : value) {
        if (std::find(av.begin(), av.end(), r) == av.end()) av.push_back(r);
      }
    } else if (key == "enum") {
      if (!av.is_array() || !value.is_array()) return Err(path, "enum must be an array");
      Json both = Json::array();
      for (const auto& x : av) {
        for (const auto& y : value) {
          if (JsonEqual(x, y)) {
            both.push_back(x);
            break;
          }
        }
      }
      av = std::move(both);  // possibly empty: no value, reported by the converter
    } else if (key == "const") {
      if (!JsonEqual(av, value)) {
        (*a)["not_satisfiable"] = "the consts " + av.dump() + " and " + value.dump() + " differ";
      }
    } else if (key == "minimum" || key == "exclusiveMinimum" || key == "minLength" ||
               key == "minItems" || key == "maximum" || key == "exclusiveMaximum" ||
               key == "maxLength" || key == "maxItems" || key == "minProperties" ||
               key == "maxProperties") {
      // Draft-4 boolean exclusive flags do not combine with another member's bounds exactly.
      if (!av.is_number() || !value.is_number()) {
        return Err(path, "allOf: conflicting '" + key + "' (" + av.dump() + " and " + value.dump() +
                             ") is not supported");
      }
      const bool lower = key.rfind("min", 0) == 0 || key == "exclusiveMinimum";
      if (lower == (value.get<double>() > av.get<double>())) av = value;
    } else {
      return Err(path, "allOf: conflicting '" + key + "' is not supported");
    }
  }
  if (unevaluated && !a->contains("additionalProperties") && !a->contains("anyOf") &&
      !a->contains("oneOf")) {
    (*a)["additionalProperties"] = *unevaluated;
  } else if (unevaluated && !a->contains("additionalProperties")) {
    (*a)["unevaluatedProperties"] = *unevaluated;  // into each anyOf/oneOf branch (converter)
  }
  return Status::Ok();
}

}  // namespace

Status MergeSchemas(SchemaJson* a, const SchemaJson& b, const SchemaRefResolver& resolve,
                    const std::string& path) {
  return Merge(a, b, resolve, path, 0);
}

}  // namespace kiln::structured
