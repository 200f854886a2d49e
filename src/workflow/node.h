// Node: one step of a workflow. A node is built (and its fields checked) once, when the workflow
// is compiled, and run many times, possibly by several runs at once. The executor owns timeouts,
// retries, fallbacks and events around Run(); a node only does its one attempt.
//
// Variants: a node with alternative models (fallback.models) has 1 + N variants; variant 0 is the
// node as written, variant i uses fallback.models[i-1]. The executor tries them in order.
//
// Thread-safety: Run() is const and may run on many threads at once; per-run state lives in
// NodeContext. NodeContext::Emit may be called from the node's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "workflow/spec.h"

namespace kiln::workflow {

class Services;

using Clock = std::chrono::steady_clock;

// One attempt of one node in one run.
struct NodeContext {
  const Json* vars = nullptr;  // {inputs, nodes, sys}: the render context (read-only here)
  int variant = 0;
  int attempt = 1;
  Clock::time_point deadline = Clock::time_point::max();  // this attempt's; Run must honour it
  const std::atomic<bool>* cancelled = nullptr;           // the run's cancellation flag
  Services* services = nullptr;
  // Streams something while the node runs: ("text_chunk", {"text": ...}), ("tts_audio", {...}).
  std::function<void(const std::string& type, Json data)> emit;
  std::vector<std::string> predecessors;  // nodes whose edge into this one was taken
  int64_t num_tokens = 0;                 // the node adds the tokens it used (model calls)
  Json input;  // the node records what it rendered and sent (for the run log)

  bool IsCancelled() const { return cancelled != nullptr && cancelled->load(); }
  double SecondsLeft() const;
};

class Node {
 public:
  virtual ~Node() = default;
  // The node's output (an object: its fields are what nodes.<id>.<field> reads).
  virtual StatusOr<Json> Run(NodeContext& ctx) const = 0;
  virtual int num_variants() const { return 1; }
  // A short name for variant `i` in the run log (e.g. the model name).
  virtual std::string VariantName(int i) const {
    return i == 0 ? "primary" : "variant" + std::to_string(i);
  }
  // Whether the output's `branch` field chooses which outgoing edges run (condition nodes).
  virtual bool is_branching() const { return false; }

  // (field, node id) for every nodes.<id> this node's templates read; checked against the graph.
  std::vector<std::pair<std::string, std::string>> field_refs;
};

// Builds the node for `spec`, checking its type-specific fields (errors name node and field).
StatusOr<std::unique_ptr<Node>> CreateNode(const NodeSpec& spec);

}  // namespace kiln::workflow
