// WorkflowSpec: a workflow as written by its author — inputs, nodes (id, type, type-specific
// fields, failure policy), edges (optionally labelled with a branch) and run limits — parsed from
// YAML (yaml-cpp) or JSON. This layer checks the generic structure only (unique ids, known node
// types, edges between existing nodes, well-formed failure policies); each node type checks its own
// fields when the workflow is compiled (workflow.h). Every error names the node and the field:
// "node 'reply': field 'retry.max_attempts': must be an integer in [1, 20]".
//
// Spec format (YAML shown; JSON is the same tree):
//   name: chat-partner
//   inputs: {message: {type: string, required: true}, user: {type: string, default: anon}}
//   limits: {timeout_s: 60, max_steps: 200}
//   nodes:
//     - {id: start, type: start}
//     - id: reply
//       type: llm
//       ...type-specific fields...
//       timeout_s: 10
//       retry: {max_attempts: 3, backoff_s: 0.2, multiplier: 2, max_backoff_s: 5, jitter: 0.2}
//       fallback: {models: [{model: small}], default: {text: "sorry"}, branch: true}
//   edges:
//     - {from: start, to: reply}
//     - {from: route, to: happy, branch: positive}   # a condition's case, "else", or "fail"
// Without `edges`, the nodes run in the order listed. A workflow has at most kMaxNodes nodes and
// kMaxEdges edges; a document nests at most 64 levels deep (YAML and JSON alike).
//
// Thread-safety: value types.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::workflow {

using Json = nlohmann::ordered_json;

// Size limits of one workflow (checked by SpecFromJson): compiling walks the graph, and a spec
// arrives from API callers.
inline constexpr int kMaxNodes = 2000;
inline constexpr int kMaxEdges = 10000;

// Retries of one node: attempt k (1-based) that fails waits
// min(max_backoff_s, backoff_s * multiplier^(k-1)) * (1 + jitter * U(-1, 1)) before attempt k+1.
struct RetryPolicy {
  int max_attempts = 1;  // 1 = no retry
  double backoff_s = 0.2;
  double multiplier = 2.0;
  double max_backoff_s = 5.0;
  double jitter = 0.2;  // in [0, 1]
  // The wait after failed attempt `attempt` (1-based), given a uniform draw u in [0, 1).
  double BackoffSeconds(int attempt, double u) const;
};

// What happens when every attempt (of every alternative model) failed.
struct FallbackPolicy {
  std::vector<Json>
      models;  // llm / classify / embed only: overrides ({model, base_url, ...}) in order
  bool has_default = false;
  Json default_output;  // used as the node's output (path "default")
  bool branch = false;  // take the node's edges labelled "fail" (path "fail_branch")
};

struct NodeSpec {
  std::string id;
  std::string type;
  std::string title;     // optional, for people
  Json config;           // the whole node object as written (type-specific fields included)
  double timeout_s = 0;  // per attempt; 0 → no per-node limit (the run's deadline still holds)
  RetryPolicy retry;
  FallbackPolicy fallback;
};

struct EdgeSpec {
  std::string from;
  std::string to;
  std::string branch;  // empty: always taken (unless the source failed into its fail branch)
};

struct InputSpec {
  std::string name;
  std::string type = "string";  // string | number | integer | boolean | object | array | any
  bool required = false;
  bool has_default = false;
  Json default_value;
};

struct WorkflowSpec {
  std::string name;
  std::string description;
  std::vector<InputSpec> inputs;
  std::vector<NodeSpec> nodes;
  std::vector<EdgeSpec> edges;
  double timeout_s = 300;  // whole run
  int max_steps = 1000;    // node executions (attempts included) per run
  Json source;             // the document as parsed (for storage, diffs and round trips)

  const NodeSpec* FindNode(const std::string& id) const;
};

// YAML or JSON text → Json (a JSON document is valid YAML, but JSON is parsed as JSON so that
// numbers and strings keep their exact types). Errors name the line and column.
StatusOr<Json> ParseDocument(const std::string& text);
// A parsed document → spec, with the generic checks described above.
StatusOr<WorkflowSpec> SpecFromJson(const Json& doc);
StatusOr<WorkflowSpec> ParseSpec(const std::string& text);
StatusOr<WorkflowSpec> LoadSpecFile(const std::string& path);

// Checks `value` against an input's declared type ("" on success, else the problem).
std::string CheckInputType(const InputSpec& input, const Json& value);

// "node 'id': field 'f': message" as an InvalidArgument.
Status NodeFieldError(const std::string& node_id, const std::string& field,
                      const std::string& message);

}  // namespace kiln::workflow

namespace kiln::workflow {
// Json → YAML text (block style; strings quoted where YAML would read them as something else).
std::string DumpYaml(const Json& doc);
}  // namespace kiln::workflow
