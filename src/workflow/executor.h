// Executor: runs a compiled Workflow once — a DAG scheduler that starts every node whose incoming
// edges have all been decided (finished or skipped) and at least one of them taken, runs
// independent branches concurrently (one thread per running node; a lone ready node runs on the
// caller's thread), and wraps every node in its failure policy:
//   attempt → (timeout_s per attempt) → retries with exponential backoff and jitter → the next
//   alternative model (fallback.models, in order, each with the same retries) → fallback.default
//   (the output is that value) or fallback.branch (the node's "fail" edges run) → the run fails.
// The node's record says which path produced its output: "primary", "fallback:<model>",
// "default" or "fail_branch", with every attempt and its error.
//
// Edges: an unlabelled edge is taken when its source succeeds; a condition node's edge when its
// label equals the chosen branch; a "fail" edge when its source failed into the fail branch. A
// node none of whose incoming edges was taken is skipped (and so is everything only it leads to).
//
// The whole run has a deadline (RunOptions::timeout_s, else the spec's limits.timeout_s) and a
// step limit (attempts of all nodes, retries included, limits.max_steps); reaching either cancels
// the nodes still running (their I/O is interrupted) and fails the run: no attempt starts past
// them and no fallback (models, default, fail branch) applies. Cancelling from outside
// (RunOptions::cancel) does the same with status "cancelled".
//
// Events (RunOptions::on_event, called from the run's threads one at a time, in order):
//   workflow_started {run_id, workflow, inputs}
//   node_started {node_id, type}
//   text_chunk {node_id, text}        llm output as it streams; answer text
//   tts_audio {node_id, ...}          synthesized audio (tts nodes)
//   node_finished {node record}       see NodeRecord::ToJson
//   workflow_finished {run result without the node trace}
//
// Thread-safety: Run() may be called from many threads at once (one run each).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "workflow/services.h"
#include "workflow/workflow.h"

namespace kiln::workflow {

struct WorkflowEvent {
  std::string type;
  Json data;  // always carries run_id
};
using EventSink = std::function<void(const WorkflowEvent&)>;

struct RunOptions {
  Json inputs = Json::object();
  std::string run_id;               // "" → generated
  std::string user;                 // sys.user
  Json sys_extra = Json::object();  // more sys.* variables (e.g. version)
  EventSink on_event;
  const std::atomic<bool>* cancel = nullptr;
  double timeout_s = 0;  // 0 → the spec's limits.timeout_s
};

struct AttemptRecord {
  std::string variant;  // "primary", "fallback:<model>"
  int attempt = 1;      // 1-based within the variant
  std::string error;    // "" when it succeeded
  double duration_ms = 0;
};

struct NodeRecord {
  std::string node_id;
  std::string type;
  std::string status;  // succeeded | failed | skipped | cancelled
  std::string path;    // primary | fallback:<model> | default | fail_branch | "" (skipped)
  std::string error;   // the last error (also set when a fallback produced the output)
  Json input;          // what the node sent (e.g. the chat request)
  Json output;
  std::vector<AttemptRecord> attempts;
  double started_ms = 0;  // since the run started
  double duration_ms = 0;
  int64_t num_tokens = 0;
  Json ToJson() const;
};

struct RunResult {
  std::string run_id;
  std::string status;  // succeeded | failed | cancelled
  std::string error;
  Json inputs;
  Json outputs = Json::object();
  std::vector<NodeRecord> nodes;  // in the order they were decided
  double duration_ms = 0;
  int64_t num_tokens = 0;
  int num_fallbacks = 0;  // nodes whose output came from a fallback path
  int num_steps = 0;      // attempts, retries included (at most limits.max_steps)
  Json ToJson(bool with_trace) const;
};

class Executor final {
 public:
  explicit Executor(Services* services) : services_(services) {}
  RunResult Run(const Workflow& workflow, RunOptions options) const;
  // The inputs with defaults applied, or an error naming the input.
  static StatusOr<Json> ResolveInputs(const WorkflowSpec& spec, const Json& inputs);

 private:
  Services* services_;
};

std::string NewRunId();

}  // namespace kiln::workflow
