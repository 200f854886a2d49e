// GeneratorLlm: LocalLlm over kiln::Generator (include/kiln/generation.h) — llm nodes run on the
// engine of the process they are in (`kiln serve`), with no HTTP hop: the chat request's messages,
// prefill (a final assistant message with continue_final_message → assistant_prefill), sampling,
// stop strings and response_format (the grammar compiled through Engine::PrepareResponseFormat on
// the calling worker thread) become a GenerationRequest; streamed text goes to on_text.
//
// Thread-safety: Chat() may be called from many threads at once (Generator is thread-safe).
#pragma once

#include "kiln/generation.h"
#include "workflow/services.h"

namespace kiln::workflow {

class GeneratorLlm final : public LocalLlm {
 public:
  explicit GeneratorLlm(const Generator* generator) : generator_(generator) {}
  StatusOr<nlohmann::ordered_json> Chat(
      const nlohmann::ordered_json& request, const NodeContext& ctx,
      const std::function<void(const std::string&)>& on_text) const override;

 private:
  const Generator* generator_;
};

}  // namespace kiln::workflow
