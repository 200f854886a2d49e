// Workflow: a spec compiled for running — every node built (its fields checked), the graph indexed
// (edges by source and target, a topological order) and validated as a whole:
//   - exactly one start node, with no edges into it; every other node reachable from it;
//   - at least one end or answer node; no cycles (the error names a node on the cycle);
//   - branch labels: a condition node's edges carry its case ids or its else id; "fail" edges
//     only leave nodes with fallback.branch; no other node's edges carry labels; a condition's
//     fallback.default is {branch: <one of its labels>} (true/false become "true"/"false");
//   - every nodes.<id> a template reads names a node that always finishes before it (an ancestor).
// Errors name the node and the field.
//
// Thread-safety: immutable after Compile; shared by every run (std::shared_ptr<const Workflow>).
#pragma once

#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "workflow/node.h"
#include "workflow/spec.h"

namespace kiln::workflow {

class Workflow final {
 public:
  struct Edge {
    int from;
    int to;
    std::string branch;
  };

  static StatusOr<std::shared_ptr<const Workflow>> Compile(WorkflowSpec spec);

  const WorkflowSpec& spec() const { return spec_; }
  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  const Node& node(int i) const { return *nodes_[static_cast<size_t>(i)]; }
  const NodeSpec& node_spec(int i) const { return spec_.nodes[static_cast<size_t>(i)]; }
  const std::vector<Edge>& edges() const { return edges_; }
  const std::vector<int>& out_edges(int node) const { return out_[static_cast<size_t>(node)]; }
  const std::vector<int>& in_edges(int node) const { return in_[static_cast<size_t>(node)]; }
  int start() const { return start_; }
  int IndexOf(const std::string& id) const;  // -1 when absent

 private:
  Workflow() = default;
  Status Validate();
  // The labels a condition node's edges may carry: its case ids and else id.
  static std::set<std::string> BranchLabels(const NodeSpec& ns);
  // Nodes reachable from `from` by one edge or more (so `from` itself only on a cycle).
  std::vector<bool> Descendants(int from) const;

  WorkflowSpec spec_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Edge> edges_;
  std::vector<std::vector<int>> out_, in_;  // node → edge indices
  std::unordered_map<std::string, int> index_;
  int start_ = -1;
};

}  // namespace kiln::workflow
