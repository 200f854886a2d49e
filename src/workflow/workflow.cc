#include "workflow/workflow.h"

#include <map>
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

std::set<std::string> Workflow::BranchLabels(const NodeSpec& ns) {
  if (ns.config.contains("if")) return {"true", "false"};
  std::set<std::string> ids = {"else"};
  const auto cases = ns.config.find("cases");
  if (cases == ns.config.end() || !cases->is_array()) return ids;
  for (size_t k = 0; k < cases->size(); ++k) {
    const Json& c = (*cases)[k];
    ids.insert(c.is_object() && c.contains("id") && c["id"].is_string()
                   ? c["id"].get<std::string>()
                   : "case" + std::to_string(k));
  }
  return ids;
}

std::vector<bool> Workflow::Descendants(int from) const {
  std::vector<bool> seen(static_cast<size_t>(num_nodes()), false);
  std::vector<int> todo;
  for (int ei : out_edges(from)) todo.push_back(edges_[static_cast<size_t>(ei)].to);
  while (!todo.empty()) {
    const int v = todo.back();
    todo.pop_back();
    if (seen[static_cast<size_t>(v)]) continue;
    seen[static_cast<size_t>(v)] = true;
    for (int ei : out_edges(v)) todo.push_back(edges_[static_cast<size_t>(ei)].to);
  }
  return seen;
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
      if (!BranchLabels(from).count(e.branch)) {
        return NodeFieldError(from.id, "edges",
                              where + " has branch '" + e.branch + "', which is not a case of it");
      }
    } else if (!e.branch.empty()) {
      return NodeFieldError(from.id, "edges",
                            where + " has branch '" + e.branch +
                                "' but only condition nodes (and 'fail' edges) branch");
    }
  }

  // A branching node's fallback.default chooses a branch like its output would.
  for (int i = 0; i < n; ++i) {
    NodeSpec& ns = spec_.nodes[static_cast<size_t>(i)];
    if (!node(i).is_branching() || !ns.fallback.has_default) continue;
    Json& d = ns.fallback.default_output;
    const std::set<std::string> labels = BranchLabels(ns);
    std::string known;
    for (const auto& l : labels) known += (known.empty() ? "" : ", ") + l;
    const auto b = d.is_object() ? d.find("branch") : d.end();
    if (b != d.end() && b->is_boolean()) *b = b->get<bool>() ? "true" : "false";
    if (b == d.end() || !b->is_string() || !labels.count(b->get<std::string>())) {
      return NodeFieldError(ns.id, "fallback.default.branch",
                            "a condition's default must name one of its branches (" + known + ")");
    }
  }

  // Cycles: iterative DFS colouring (a recursive one overflows the stack on long chains).
  std::vector<int> colour(static_cast<size_t>(n), 0);  // 0 new, 1 on the stack, 2 done
  std::vector<std::pair<int, size_t>> stack;           // (node, next out-edge to look at)
  for (int root = 0; root < n; ++root) {
    if (colour[static_cast<size_t>(root)] != 0) continue;
    colour[static_cast<size_t>(root)] = 1;
    stack.push_back({root, 0});
    while (!stack.empty()) {
      auto& [v, next] = stack.back();
      if (next == out_edges(v).size()) {
        colour[static_cast<size_t>(v)] = 2;
        stack.pop_back();
        continue;
      }
      const int w = edges_[static_cast<size_t>(out_edges(v)[next++])].to;
      if (colour[static_cast<size_t>(w)] == 1) {
        return NodeFieldError(node_spec(w).id, "edges", "the edges form a cycle through this node");
      }
      if (colour[static_cast<size_t>(w)] == 0) {
        colour[static_cast<size_t>(w)] = 1;
        stack.push_back({w, 0});
      }
    }
  }
  const std::vector<bool> reached = Descendants(start_);
  for (int i = 0; i < n; ++i) {
    if (i != start_ && !reached[static_cast<size_t>(i)]) {
      return NodeFieldError(node_spec(i).id, "edges",
                            "the node cannot be reached from the start node");
    }
  }

  // Ancestors: every referenced node must finish before the referencing one, i.e. the reader is a
  // descendant of the node it reads. One graph search per referenced node (memory linear in the
  // graph, not an ancestor set per node).
  std::map<int, std::vector<std::pair<int, const std::string*>>> readers;  // read → (reader, field)
  for (int i = 0; i < n; ++i) {
    for (const auto& [field, id] : node(i).field_refs) {
      const int j = IndexOf(id);
      if (j < 0) {
        return NodeFieldError(node_spec(i).id, field,
                              "reads nodes." + id + ", but no node has id '" + id + "'");
      }
      readers[j].push_back({i, &field});
    }
  }
  for (const auto& [j, list] : readers) {
    const std::vector<bool> after = Descendants(j);
    for (const auto& [i, field] : list) {
      if (!after[static_cast<size_t>(i)]) {
        const std::string& id = node_spec(j).id;
        return NodeFieldError(node_spec(i).id, *field,
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
