#include "workflow/nodes/node_fields.h"

#include <cmath>
#include <sstream>

namespace kiln::workflow {

const Json* NodeFields::Raw(const std::string& key) {
  read_.insert(key);
  const auto it = spec_.config.find(key);
  if (it == spec_.config.end() || it->is_null()) return nullptr;
  return &*it;
}

StatusOr<std::string> NodeFields::String(const std::string& key, bool required,
                                         const std::string& def) {
  const Json* v = Raw(key);
  if (v == nullptr) {
    if (required) return Error(key, "is required");
    return def;
  }
  if (!v->is_string()) return Error(key, "must be a string");
  return v->get<std::string>();
}

StatusOr<double> NodeFields::Number(const std::string& key, double lo, double hi, double def) {
  const Json* v = Raw(key);
  if (v == nullptr) return def;
  if (!v->is_number() || std::isnan(v->get<double>()) || v->get<double>() < lo ||
      v->get<double>() > hi) {
    std::ostringstream m;
    m << "must be a number in [" << lo << ", " << hi << "]";
    return Error(key, m.str());
  }
  return v->get<double>();
}

StatusOr<bool> NodeFields::Bool(const std::string& key, bool def) {
  const Json* v = Raw(key);
  if (v == nullptr) return def;
  if (!v->is_boolean()) return Error(key, "must be true or false");
  return v->get<bool>();
}

StatusOr<std::string> NodeFields::Enum(const std::string& key,
                                       const std::vector<std::string>& allowed,
                                       const std::string& def) {
  KILN_ASSIGN_OR_RETURN(std::string v, String(key, false, def));
  std::string list;
  for (const auto& a : allowed) {
    if (a == v) return v;
    list += (list.empty() ? "" : ", ") + a;
  }
  return Error(key, "must be one of: " + list + " (got '" + v + "')");
}

StatusOr<Template> NodeFields::CompileAt(const std::string& field, std::string source) {
  auto t = Template::Compile(std::move(source));
  if (!t.ok()) return Error(field, t.status().message());
  for (const auto& id : t->node_refs()) refs_.emplace_back(field, id);
  return std::move(*t);
}

StatusOr<Expression> NodeFields::ExpressionAt(const std::string& field, const std::string& source) {
  auto e = Expression::Compile(source);
  if (!e.ok()) return Error(field, e.status().message());
  for (const auto& id : e->node_refs()) refs_.emplace_back(field, id);
  return std::move(*e);
}

StatusOr<Template> NodeFields::TemplateField(const std::string& key, bool required) {
  KILN_ASSIGN_OR_RETURN(std::string source, String(key, required));
  return CompileAt(key, std::move(source));
}

StatusOr<TemplateTree> NodeFields::TreeField(const std::string& key, const Json& def) {
  const Json* v = Raw(key);
  auto t = TemplateTree::Compile(v ? *v : def);
  if (!t.ok()) return Error(key, t.status().message());
  for (const auto& id : t->node_refs()) refs_.emplace_back(key, id);
  return std::move(*t);
}

StatusOr<std::vector<std::pair<std::string, Template>>> NodeFields::TemplateMap(
    const std::string& key) {
  std::vector<std::pair<std::string, Template>> out;
  const Json* v = Raw(key);
  if (v == nullptr) return out;
  if (!v->is_object()) return Error(key, "must be a mapping of name → text");
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (!it->is_string() && !it->is_number() && !it->is_boolean()) {
      return Error(key + "." + it.key(), "must be a string");
    }
    KILN_ASSIGN_OR_RETURN(
        Template t,
        CompileAt(key + "." + it.key(), it->is_string() ? it->get<std::string>() : it->dump()));
    out.emplace_back(it.key(), std::move(t));
  }
  return out;
}

void NodeFields::Known(std::initializer_list<const char*> keys) {
  for (const char* k : keys) read_.insert(k);
}

Status NodeFields::CheckUnknown() const {
  static const std::set<std::string> kCommon = {"id",        "type",  "title",   "description",
                                                "timeout_s", "retry", "fallback"};
  for (auto it = spec_.config.begin(); it != spec_.config.end(); ++it) {
    if (!kCommon.count(it.key()) && !read_.count(it.key())) {
      return Error(it.key(), "unknown field for a " + spec_.type + " node");
    }
  }
  return Status::Ok();
}

}  // namespace kiln::workflow
