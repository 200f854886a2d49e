// ImportDify: converts a Dify DSL export (kind: app; workflow.graph.nodes / edges) to a kiln
// workflow. Converted node types: start (its variables become inputs; an advanced-chat app also
// gets `query` and `history`), llm (model, completion_params → sampling, prompt_template →
// system / messages, memory → history + the query prompt), if-else (cases → a condition node),
// template-transform (its variables become {% set %} lines), http-request, answer and end.
// Dify variable references {{#node_id.var#}} become {{ nodes.<id>.<var> }} ({{ inputs.<var> }}
// for the start node and sys.query). features.text_to_speech adds a tts node after the answer.
// Any other node type fails the import with every such node named (id, title, type).
//
// Thread-safety: a pure function.
#pragma once

#include <string>
#include <vector>

#include "kiln/status.h"
#include "workflow/spec.h"

namespace kiln::workflow {

struct DifyImportOptions {
  std::string model;  // non-empty: replaces every model name in the file
};

struct DifyImport {
  Json spec;                       // the kiln workflow document
  std::string yaml;                // the same as YAML
  std::vector<std::string> notes;  // what was changed or dropped, for people
};

StatusOr<DifyImport> ImportDify(const std::string& text, const DifyImportOptions& options);

}  // namespace kiln::workflow
