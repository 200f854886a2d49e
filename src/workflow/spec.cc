#include "workflow/spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "server/openai_protocol.h"

namespace kiln::workflow {
namespace {

// Deepest nesting of a spec document (YAML or JSON), so that no walk of it recurses without bound.
constexpr int kMaxDocumentDepth = 64;

const std::set<std::string>& KnownTypes() {
  static const std::set<std::string> k = {"start",    "llm",  "classify", "embed",   "condition",
                                          "template", "http", "store",    "message", "tts",
                                          "parallel", "join", "end",      "answer"};
  return k;
}

// YAML 1.2 core-schema scalars: null, booleans, integers, floats; anything quoted is a string.
Json ScalarToJson(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  char* end = nullptr;
  const long long i = std::strtoll(s.c_str(), &end, 10);
  if (end != s.c_str() && *end == '\0' && s.find_first_of(".eE") == std::string::npos) return i;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() && *end == '\0' &&
      s.find_first_not_of("+-0123456789.eE") == std::string::npos) {
    return d;
  }
  return s;
}

StatusOr<Json> YamlToJson(const YAML::Node& n, int depth) {
  if (depth > kMaxDocumentDepth) {
    return Status::InvalidArgument("the document nests deeper than " +
                                   std::to_string(kMaxDocumentDepth) + " levels");
  }
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Json(nullptr);
    case YAML::NodeType::Scalar:
      return ScalarToJson(n);
    case YAML::NodeType::Sequence: {
      Json a = Json::array();
      for (const auto& item : n) {
        KILN_ASSIGN_OR_RETURN(Json v, YamlToJson(item, depth + 1));
        a.push_back(std::move(v));
      }
      return a;
    }
    case YAML::NodeType::Map: {
      Json o = Json::object();
      for (const auto& kv : n) {
        if (!kv.first.IsScalar()) {
          return Status::InvalidArgument("line " + std::to_string(kv.first.Mark().line + 1) +
                                         ": mapping keys must be scalars");
        }
        KILN_ASSIGN_OR_RETURN(Json v, YamlToJson(kv.second, depth + 1));
        o[kv.first.Scalar()] = std::move(v);
      }
      return o;
    }
  }
  return Json(nullptr);
}

// Names Jinja resolves as dict methods before keys: nodes.get would be the method, not the node.
bool IsDictMethodName(const std::string& name) {
  return name == "items" || name == "keys" || name == "values" || name == "get" ||
         name == "update" || name == "copy";
}

Status FieldError(const std::string& where, const std::string& message) {
  return Status::InvalidArgument(where + ": " + message);
}

StatusOr<double> NumberField(const Json& obj, const std::string& key, double def, double lo,
                             double hi, const std::string& node_id, const std::string& prefix) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  if (!it->is_number() || std::isnan(it->get<double>()) || it->get<double>() < lo ||
      it->get<double>() > hi) {
    std::ostringstream m;
    m << "must be a number in [" << lo << ", " << hi << "]";
    return NodeFieldError(node_id, prefix + key, m.str());
  }
  return it->get<double>();
}

Status ParseRetry(const Json& node, NodeSpec* spec) {
  const auto it = node.find("retry");
  if (it == node.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return NodeFieldError(spec->id, "retry", "must be an object");
  const Json& r = *it;
  for (auto f = r.begin(); f != r.end(); ++f) {
    static const std::set<std::string> kKeys = {"max_attempts", "backoff_s", "multiplier",
                                                "max_backoff_s", "jitter"};
    if (!kKeys.count(f.key())) return NodeFieldError(spec->id, "retry." + f.key(), "unknown field");
  }
  if (r.contains("max_attempts")) {
    const Json& m = r["max_attempts"];
    if (!m.is_number_integer() || m.get<int64_t>() < 1 || m.get<int64_t>() > 20) {
      return NodeFieldError(spec->id, "retry.max_attempts", "must be an integer in [1, 20]");
    }
    spec->retry.max_attempts = m.get<int>();
  }
  KILN_ASSIGN_OR_RETURN(spec->retry.backoff_s, NumberField(r, "backoff_s", spec->retry.backoff_s, 0,
                                                           60, spec->id, "retry."));
  KILN_ASSIGN_OR_RETURN(spec->retry.multiplier, NumberField(r, "multiplier", spec->retry.multiplier,
                                                            1, 10, spec->id, "retry."));
  KILN_ASSIGN_OR_RETURN(
      spec->retry.max_backoff_s,
      NumberField(r, "max_backoff_s", spec->retry.max_backoff_s, 0, 600, spec->id, "retry."));
  KILN_ASSIGN_OR_RETURN(spec->retry.jitter,
                        NumberField(r, "jitter", spec->retry.jitter, 0, 1, spec->id, "retry."));
  return Status::Ok();
}

Status ParseFallback(const Json& node, NodeSpec* spec) {
  const auto it = node.find("fallback");
  if (it == node.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return NodeFieldError(spec->id, "fallback", "must be an object");
  const Json& f = *it;
  for (auto k = f.begin(); k != f.end(); ++k) {
    if (k.key() != "models" && k.key() != "default" && k.key() != "branch") {
      return NodeFieldError(spec->id, "fallback." + k.key(),
                            "unknown field (expected models, default or branch)");
    }
  }
  if (f.contains("models")) {
    const Json& m = f["models"];
    if (!m.is_array() || m.empty()) {
      return NodeFieldError(spec->id, "fallback.models", "must be a non-empty list");
    }
    if (spec->type != "llm" && spec->type != "classify" && spec->type != "embed") {
      return NodeFieldError(spec->id, "fallback.models",
                            "only llm, classify and embed nodes have models to fall back to");
    }
    for (size_t i = 0; i < m.size(); ++i) {
      Json entry = m[i].is_string() ? Json{{"model", m[i]}} : m[i];
      if (!entry.is_object() || !entry.contains("model") || !entry["model"].is_string()) {
        return NodeFieldError(spec->id, "fallback.models[" + std::to_string(i) + "]",
                              "must be a model name or an object with a string 'model'");
      }
      spec->fallback.models.push_back(std::move(entry));
    }
  }
  if (f.contains("default")) {
    spec->fallback.has_default = true;
    spec->fallback.default_output = f["default"];
  }
  if (f.contains("branch")) {
    if (!f["branch"].is_boolean())
      return NodeFieldError(spec->id, "fallback.branch", "must be a boolean");
    spec->fallback.branch = f["branch"].get<bool>();
  }
  if (spec->fallback.has_default && spec->fallback.branch) {
    return NodeFieldError(spec->id, "fallback",
                          "'default' and 'branch' exclude each other (pick one final fallback)");
  }
  return Status::Ok();
}

StatusOr<NodeSpec> ParseNode(const Json& n, size_t index) {
  const std::string where = "nodes[" + std::to_string(index) + "]";
  if (!n.is_object()) return FieldError(where, "must be an object");
  NodeSpec spec;
  if (!n.contains("id") || !n["id"].is_string() || n["id"].get<std::string>().empty()) {
    return FieldError(where, "field 'id': a non-empty string is required");
  }
  spec.id = n["id"].get<std::string>();
  for (char c : spec.id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return NodeFieldError(spec.id, "id",
                            "use letters, digits and '_' only (ids are variable names in "
                            "templates: nodes.<id>.field)");
    }
  }
  if (std::isdigit(static_cast<unsigned char>(spec.id[0]))) {
    return NodeFieldError(spec.id, "id", "must not start with a digit");
  }
  if (IsDictMethodName(spec.id)) {
    return NodeFieldError(spec.id, "id",
                          "'" + spec.id + "' is a method of template objects, so nodes." + spec.id +
                              " would not read this node; choose another id");
  }
  if (!n.contains("type") || !n["type"].is_string()) {
    return NodeFieldError(spec.id, "type", "a string is required");
  }
  spec.type = n["type"].get<std::string>();
  if (!KnownTypes().count(spec.type)) {
    std::string known;
    for (const auto& t : KnownTypes()) known += (known.empty() ? "" : ", ") + t;
    return NodeFieldError(spec.id, "type",
                          "unknown node type '" + spec.type + "' (known: " + known + ")");
  }
  if (n.contains("title")) {
    if (!n["title"].is_string()) return NodeFieldError(spec.id, "title", "must be a string");
    spec.title = n["title"].get<std::string>();
  }
  KILN_ASSIGN_OR_RETURN(spec.timeout_s, NumberField(n, "timeout_s", 0, 0, 86400, spec.id, ""));
  KILN_RETURN_IF_ERROR(ParseRetry(n, &spec));
  KILN_RETURN_IF_ERROR(ParseFallback(n, &spec));
  spec.config = n;
  return spec;
}

Status ParseInputs(const Json& doc, WorkflowSpec* spec) {
  const auto it = doc.find("inputs");
  if (it == doc.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return FieldError("inputs", "must be a mapping of name → declaration");
  static const std::set<std::string> kTypes = {"string", "number", "integer", "boolean",
                                               "object", "array",  "any"};
  for (auto in = it->begin(); in != it->end(); ++in) {
    InputSpec s;
    s.name = in.key();
    const std::string where = "inputs." + s.name;
    if (IsDictMethodName(s.name)) {
      return FieldError(where, "'" + s.name + "' is a method of template objects, so inputs." +
                                   s.name + " would not read this input; choose another name");
    }
    const Json& d = in.value();
    if (d.is_string()) {
      s.type = d.get<std::string>();
    } else if (d.is_object()) {
      if (d.contains("type")) {
        if (!d["type"].is_string()) return FieldError(where + ".type", "must be a string");
        s.type = d["type"].get<std::string>();
      }
      if (d.contains("required")) {
        if (!d["required"].is_boolean())
          return FieldError(where + ".required", "must be a boolean");
        s.required = d["required"].get<bool>();
      }
      if (d.contains("default")) {
        s.has_default = true;
        s.default_value = d["default"];
      }
    } else if (!d.is_null()) {
      return FieldError(where, "must be a type name or an object {type, required, default}");
    }
    if (!kTypes.count(s.type)) return FieldError(where + ".type", "unknown type '" + s.type + "'");
    if (s.has_default) {
      const std::string problem = CheckInputType(s, s.default_value);
      if (!problem.empty()) return FieldError(where + ".default", problem);
    }
    spec->inputs.push_back(std::move(s));
  }
  return Status::Ok();
}

}  // namespace

double RetryPolicy::BackoffSeconds(int attempt, double u) const {
  double wait = backoff_s * std::pow(multiplier, std::max(0, attempt - 1));
  wait = std::min(wait, max_backoff_s);
  return std::max(0.0, wait * (1.0 + jitter * (2.0 * u - 1.0)));
}

Status NodeFieldError(const std::string& node_id, const std::string& field,
                      const std::string& message) {
  return Status::InvalidArgument("node '" + node_id + "': field '" + field + "': " + message);
}

const NodeSpec* WorkflowSpec::FindNode(const std::string& id) const {
  for (const auto& n : nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

std::string CheckInputType(const InputSpec& input, const Json& v) {
  const std::string& t = input.type;
  bool ok = true;
  if (t == "string") ok = v.is_string();
  if (t == "number") ok = v.is_number();
  if (t == "integer") ok = v.is_number_integer();
  if (t == "boolean") ok = v.is_boolean();
  if (t == "object") ok = v.is_object();
  if (t == "array") ok = v.is_array();
  return ok ? "" : "must be of type " + t + " (got " + v.type_name() + ")";
}

StatusOr<Json> ParseDocument(const std::string& text) {
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (text[first] == '{' || text[first] == '[')) {
    // Counted on the text: the parser (and every walk after it) recurses once per level.
    if (server::JsonNestingDepth(text, kMaxDocumentDepth) > kMaxDocumentDepth) {
      return Status::InvalidArgument("the document nests deeper than " +
                                     std::to_string(kMaxDocumentDepth) + " levels");
    }
    Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      try {
        (void)Json::parse(text);
      } catch (const std::exception& e) {
        return Status::InvalidArgument(std::string("invalid JSON: ") + e.what());
      }
      return Status::InvalidArgument("invalid JSON");
    }
    return j;
  }
  try {
    YAML::Node root = YAML::Load(text);
    return YamlToJson(root, 0);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument("invalid YAML at line " + std::to_string(e.mark.line + 1) +
                                   ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

StatusOr<WorkflowSpec> SpecFromJson(const Json& doc) {
  if (!doc.is_object()) return Status::InvalidArgument("a workflow must be a mapping (object)");
  if (doc.contains("kind") && doc["kind"] == "app" && doc.contains("workflow")) {
    return Status::InvalidArgument(
        "this is a Dify DSL file: convert it first with `kiln flow import FILE`");
  }
  static const std::set<std::string> kTop = {"name",  "description", "inputs", "nodes",
                                             "edges", "limits",      "version"};
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (!kTop.count(it.key())) return FieldError(it.key(), "unknown top-level field");
  }
  WorkflowSpec spec;
  spec.source = doc;
  if (doc.contains("name")) {
    if (!doc["name"].is_string()) return FieldError("name", "must be a string");
    spec.name = doc["name"].get<std::string>();
  }
  if (doc.contains("description") && doc["description"].is_string()) {
    spec.description = doc["description"].get<std::string>();
  }
  KILN_RETURN_IF_ERROR(ParseInputs(doc, &spec));
  if (const auto l = doc.find("limits"); l != doc.end() && !l->is_null()) {
    if (!l->is_object()) return FieldError("limits", "must be an object");
    for (auto k = l->begin(); k != l->end(); ++k) {
      if (k.key() != "timeout_s" && k.key() != "max_steps") {
        return FieldError("limits." + k.key(), "unknown field (expected timeout_s, max_steps)");
      }
    }
    if (l->contains("timeout_s")) {
      const Json& t = (*l)["timeout_s"];
      if (!t.is_number() || t.get<double>() <= 0 || t.get<double>() > 86400) {
        return FieldError("limits.timeout_s", "must be a number in (0, 86400]");
      }
      spec.timeout_s = t.get<double>();
    }
    if (l->contains("max_steps")) {
      const Json& m = (*l)["max_steps"];
      if (!m.is_number_integer() || m.get<int64_t>() < 1 || m.get<int64_t>() > 1000000) {
        return FieldError("limits.max_steps", "must be an integer in [1, 1000000]");
      }
      spec.max_steps = m.get<int>();
    }
  }
  const auto nodes = doc.find("nodes");
  if (nodes == doc.end() || !nodes->is_array() || nodes->empty()) {
    return FieldError("nodes", "a non-empty list of nodes is required");
  }
  if (nodes->size() > static_cast<size_t>(kMaxNodes)) {
    return FieldError("nodes", "a workflow has at most " + std::to_string(kMaxNodes) +
                                   " nodes (this one has " + std::to_string(nodes->size()) + ")");
  }
  std::set<std::string> ids;
  for (size_t i = 0; i < nodes->size(); ++i) {
    KILN_ASSIGN_OR_RETURN(NodeSpec n, ParseNode((*nodes)[i], i));
    if (!ids.insert(n.id).second) return NodeFieldError(n.id, "id", "duplicate node id");
    spec.nodes.push_back(std::move(n));
  }
  const auto edges = doc.find("edges");
  if (edges == doc.end() || edges->is_null()) {
    for (size_t i = 0; i + 1 < spec.nodes.size(); ++i) {
      spec.edges.push_back({spec.nodes[i].id, spec.nodes[i + 1].id, ""});
    }
  } else {
    if (!edges->is_array()) return FieldError("edges", "must be a list of {from, to[, branch]}");
    if (edges->size() > static_cast<size_t>(kMaxEdges)) {
      return FieldError("edges", "a workflow has at most " + std::to_string(kMaxEdges) +
                                     " edges (this one has " + std::to_string(edges->size()) + ")");
    }
    std::set<std::string> seen;
    for (size_t i = 0; i < edges->size(); ++i) {
      const Json& e = (*edges)[i];
      const std::string where = "edges[" + std::to_string(i) + "]";
      if (!e.is_object()) return FieldError(where, "must be an object {from, to[, branch]}");
      EdgeSpec edge;
      for (const char* key : {"from", "to"}) {
        if (!e.contains(key) || !e[key].is_string()) {
          return FieldError(where + "." + key, "a node id (string) is required");
        }
        const std::string id = e[key].get<std::string>();
        if (!ids.count(id)) return FieldError(where + "." + key, "no node has id '" + id + "'");
      }
      edge.from = e["from"].get<std::string>();
      edge.to = e["to"].get<std::string>();
      if (e.contains("branch") && !e["branch"].is_null()) {
        if (e["branch"].is_boolean()) {
          edge.branch = e["branch"].get<bool>() ? "true" : "false";
        } else if (e["branch"].is_string()) {
          edge.branch = e["branch"].get<std::string>();
        } else {
          return FieldError(where + ".branch", "must be a string");
        }
      }
      for (auto k = e.begin(); k != e.end(); ++k) {
        if (k.key() != "from" && k.key() != "to" && k.key() != "branch") {
          return FieldError(where + "." + k.key(), "unknown field (expected from, to, branch)");
        }
      }
      if (edge.from == edge.to) return FieldError(where, "an edge from a node to itself");
      if (!seen.insert(edge.from + "\n" + edge.to + "\n" + edge.branch).second) {
        return FieldError(where, "duplicate edge " + edge.from + " → " + edge.to);
      }
      spec.edges.push_back(std::move(edge));
    }
  }
  return spec;
}

StatusOr<WorkflowSpec> ParseSpec(const std::string& text) {
  KILN_ASSIGN_OR_RETURN(Json doc, ParseDocument(text));
  return SpecFromJson(doc);
}

StatusOr<WorkflowSpec> LoadSpecFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read workflow file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  auto spec = ParseSpec(ss.str());
  if (!spec.ok()) return spec.status().WithContext(path);
  return spec;
}

}  // namespace kiln::workflow

namespace kiln::workflow {
namespace {
void EmitYaml(YAML::Emitter& out, const Json& v) {
  if (v.is_object()) {
    out << YAML::BeginMap;
    for (auto it = v.begin(); it != v.end(); ++it) {
      out << YAML::Key << it.key() << YAML::Value;
      EmitYaml(out, it.value());
    }
    out << YAML::EndMap;
  } else if (v.is_array()) {
    out << YAML::BeginSeq;
    for (const auto& x : v) EmitYaml(out, x);
    out << YAML::EndSeq;
  } else if (v.is_string()) {
    const std::string& s = v.get<std::string>();
    if (s.find('\n') != std::string::npos) {
      out << YAML::Literal << s;
    } else {
      out << YAML::DoubleQuoted << s;
    }
  } else if (v.is_null()) {
    out << YAML::Null;
  } else if (v.is_boolean()) {
    out << v.get<bool>();
  } else if (v.is_number_integer()) {
    out << v.get<int64_t>();
  } else {
    out << v.get<double>();
  }
}
}  // namespace

std::string DumpYaml(const Json& doc) {
  YAML::Emitter out;
  EmitYaml(out, doc);
  return std::string(out.c_str()) + "\n";
}
}  // namespace kiln::workflow
