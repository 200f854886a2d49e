#include "workflow/spec_diff.h"

#include <map>
#include <set>

namespace kiln::workflow {
namespace {

void DiffValues(const Json& a, const Json& b, const std::string& path, Json* out) {
  if (a == b) return;
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
    for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
    for (const auto& k : keys) {
      DiffValues(a.contains(k) ? a[k] : Json(), b.contains(k) ? b[k] : Json(),
                 path.empty() ? k : path + "." + k, out);
    }
    return;
  }
  out->push_back({{"field", path}, {"from", a}, {"to", b}});
}

std::map<std::string, Json> ById(const Json& doc) {
  std::map<std::string, Json> m;
  for (const auto& n : doc.value("nodes", Json::array())) {
    if (n.is_object() && n.contains("id") && n["id"].is_string()) m[n["id"].get<std::string>()] = n;
  }
  return m;
}

// Edges as written, or the implied chain when a document has none (SpecFromJson's rule).
std::set<std::string> Edges(const Json& doc) {
  std::set<std::string> s;
  const Json edges = doc.value("edges", Json());
  if (edges.is_array()) {
    for (const auto& e : edges) {
      std::string branch;
      if (e.contains("branch") && e["branch"].is_string()) branch = e["branch"].get<std::string>();
      if (e.contains("branch") && e["branch"].is_boolean())
        branch = e["branch"].get<bool>() ? "true" : "false";
      s.insert(e.value("from", "") + " → " + e.value("to", "") +
               (branch.empty() ? "" : " [" + branch + "]"));
    }
    return s;
  }
  const Json nodes = doc.value("nodes", Json::array());
  for (size_t i = 0; i + 1 < nodes.size(); ++i) {
    s.insert(nodes[i].value("id", "") + " → " + nodes[i + 1].value("id", ""));
  }
  return s;
}

}  // namespace

Json DiffSpecs(const Json& from, const Json& to) {
  Json nodes = {{"added", Json::array()}, {"removed", Json::array()}, {"changed", Json::array()}};
  const auto a = ById(from), b = ById(to);
  for (const auto& [id, n] : a) {
    if (!b.count(id)) nodes["removed"].push_back(id);
  }
  for (const auto& [id, n] : b) {
    const auto it = a.find(id);
    if (it == a.end()) {
      nodes["added"].push_back(id);
      continue;
    }
    Json fields = Json::array();
    DiffValues(it->second, n, "", &fields);
    if (!fields.empty()) nodes["changed"].push_back({{"id", id}, {"fields", std::move(fields)}});
  }
  Json edges = {{"added", Json::array()}, {"removed", Json::array()}};
  const auto ea = Edges(from), eb = Edges(to);
  for (const auto& e : ea) {
    if (!eb.count(e)) edges["removed"].push_back(e);
  }
  for (const auto& e : eb) {
    if (!ea.count(e)) edges["added"].push_back(e);
  }
  Json inputs = {{"added", Json::array()}, {"removed", Json::array()}, {"changed", Json::array()}};
  const Json ia = from.value("inputs", Json::object()), ib = to.value("inputs", Json::object());
  if (ia.is_object() && ib.is_object()) {
    for (auto it = ia.begin(); it != ia.end(); ++it) {
      if (!ib.contains(it.key())) inputs["removed"].push_back(it.key());
    }
    for (auto it = ib.begin(); it != ib.end(); ++it) {
      if (!ia.contains(it.key())) {
        inputs["added"].push_back(it.key());
      } else if (ia[it.key()] != it.value()) {
        inputs["changed"].push_back(
            {{"name", it.key()}, {"from", ia[it.key()]}, {"to", it.value()}});
      }
    }
  }
  Json fields = Json::array();
  Json ra = from, rb = to;
  for (Json* d : {&ra, &rb}) {
    if (!d->is_object()) continue;
    d->erase("nodes");
    d->erase("edges");
    d->erase("inputs");
  }
  DiffValues(ra, rb, "", &fields);
  const bool identical = nodes["added"].empty() && nodes["removed"].empty() &&
                         nodes["changed"].empty() && edges["added"].empty() &&
                         edges["removed"].empty() && inputs["added"].empty() &&
                         inputs["removed"].empty() && inputs["changed"].empty() && fields.empty();
  return {{"identical", identical},
          {"nodes", nodes},
          {"edges", edges},
          {"inputs", inputs},
          {"fields", fields}};
}

}  // namespace kiln::workflow
