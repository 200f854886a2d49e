#include "workflow/workflow.h"

#include <functional>
#include <set>

namespace kiln::workflow {

int Workflow::IndexOf(const std::string& id) const {
  const auto it = index_.find(id);
  return it == index_.end() ? -1 : it->second;
}

StatusOr<std::shared_ptr<const Workflow>> Workflow::Compile(WorkflowSpec spec) {
  std::shared_ptr<Workflow> w(new Workflow());
  w->spec_ = std::move(spec);
  const size_t n = w->spec_.nodes.size();
  w->out_.resize(n);
  w->in_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const NodeSpec& ns = w->spec_.nodes[i];
    w->index_[ns.id] = static_cast<int>(i);
    KILN_ASSIGN_OR_RETURN(std::unique_ptr<Node> node, CreateNode(ns));
    w->nodes_.push_back(std::move(node));
  }
  for (const auto& e : w->spec_.edges) {
    const int idx = static_cast<int>(w->edges_.size());
    w->edges_.push_back({w->index_.at(e.from), w->index_.at(e.to), e.branch});
    w->out_[static_cast<size_t>(w->edges_.back().from)].push_back(idx);
    w->in_[static_cast<size_t>(w->edges_.back().to)].push_back(idx);
  }
  KILN_RETURN_IF_ERROR(w->Validate());
  return std::shared_ptr<const Workflow>(std::move(w));
}

Status Workflow::Validate() {
  const int n = num_nodes();
  bool has_end = false;
  for (int i = 0; i < n; ++i) {
    const NodeSpec& ns = node_spec(i);
    if (ns.type == "start") {
      if (start_ >= 0) {
        return NodeFieldError(ns.id, "type",
                              "a second start node (the first is '" + node_spec(start_).id + "')");
      }
      start_ = i;
      if (!in_edges(i).empty()) {
        return NodeFieldError(ns.id, "edges", "the start node cannot have edges into it");
      }
    }
    if (ns.type == "end" || ns.type == "answer") has_end = true;
  }
  if (start_ < 0) return Status::InvalidArgument("the workflow has no start node (type: start)");
  if (!has_end) return Status::InvalidArgument("the workflow has no end or answer node");

  // Branch labels.
  for (const Edge& e : edges_) {
    const NodeSpec& from = node_spec(e.from);
    const std::string where = "edge " + from.id + " → " + node_spec(e.to).id;
    if (e.branch == "fail") {
      if (!from.fallback.branch) {
        return NodeFieldError(from.id, "fallback.branch",
                              "must be true for the " + where + " labelled 'fail'");
      }
      continue;
    }
    if (node(e.from).is_branching()) {
      if (e.branch.empty()) {
        return NodeFieldError(from.id, "edges", where + " needs a branch (a case id or else)");
      }
      std::set<std::string> ids;
      if (from.config.contains("if")) {
        ids = {"true", "false"};
      } else {
        ids.insert("else");
        const Json& cases = from.config["cases"];
        for (size_t k = 0; k < cases.size(); ++k) {
          ids.insert(cases[k].contains("id") && cases[k]["id"].is_string()
                         ? cases[k]["id"].get<std::string>()
                         : "case" + std::to_string(k));
        }
      }
      if (!ids.count(e.branch)) {
        return NodeFieldError(from.id, "edges",
                              where + " has branch '" + e.branch + "', which is not a case of it");
      }
    } else if (!e.branch.empty()) {
      return NodeFieldError(from.id, "edges",
                            where + " has branch '" + e.branch +
                                "' but only condition nodes (and 'fail' edges) branch");
    }
  }

  // Cycles (DFS colouring) and reachability from start.
  std::vector<int> colour(static_cast<size_t>(n), 0);
  std::string cycle_at;
  std::function<bool(int)> dfs = [&](int v) {
    colour[static_cast<size_t>(v)] = 1;
    for (int ei : out_edges(v)) {
      const int w = edges_[static_cast<size_t>(ei)].to;
      if (colour[static_cast<size_t>(w)] == 1) {
        cycle_at = node_spec(w).id;
        return false;
      }
      if (colour[static_cast<size_t>(w)] == 0 && !dfs(w)) return false;
    }
    colour[static_cast<size_t>(v)] = 2;
    return true;
  };
  for (int i = 0; i < n; ++i) {
    if (colour[static_cast<size_t>(i)] == 0 && !dfs(i)) {
      return NodeFieldError(cycle_at, "edges", "the edges form a cycle through this node");
    }
  }
  std::vector<bool> reached(static_cast<size_t>(n), false);
  std::function<void(int)> reach = [&](int v) {
    if (reached[static_cast<size_t>(v)]) return;
    reached[static_cast<size_t>(v)] = true;
    for (int ei : out_edges(v)) reach(edges_[static_cast<size_t>(ei)].to);
  };
  reach(start_);
  for (int i = 0; i < n; ++i) {
    if (!reached[static_cast<size_t>(i)]) {
      return NodeFieldError(node_spec(i).id, "edges",
                            "the node cannot be reached from the start node");
    }
  }

  // Ancestors: every referenced node must finish before the referencing one.
  std::vector<std::set<int>> ancestors(static_cast<size_t>(n));
  std::function<const std::set<int>&(int)> anc = [&](int v) -> const std::set<int>& {
    auto& a = ancestors[static_cast<size_t>(v)];
    if (!a.empty() || in_edges(v).empty()) return a;
    for (int ei : in_edges(v)) {
      const int p = edges_[static_cast<size_t>(ei)].from;
      a.insert(p);
      const auto& pa = anc(p);
      a.insert(pa.begin(), pa.end());
    }
    return a;
  };
  for (int i = 0; i < n; ++i) {
    for (const auto& [field, id] : node(i).field_refs) {
      const int j = IndexOf(id);
      if (j < 0) {
        return NodeFieldError(node_spec(i).id, field,
                              "reads nodes." + id + ", but no node has id '" + id + "'");
      }
      if (!anc(i).count(j)) {
        return NodeFieldError(node_spec(i).id, field,
                              "reads nodes." + id +
                                  ", which does not run before this node (add an "
                                  "edge path from '" +
                                  id + "' to '" + node_spec(i).id + "')");
      }
    }
  }
  return Status::Ok();
}

}  // namespace kiln::workflow
