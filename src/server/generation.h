// Generation: the state of one /v1/chat/completions or /v1/completions request while the engine
// runs it: one Choice per (prompt, n) pair, each an engine request with its own incremental
// detokenizer and stop-string matcher. Produces either one JSON response or an SSE stream.
//
// Threading: created on a connection's strand; Start() submits to the engine; engine outputs are
// posted to the strand (HttpResponder::Post) and processed there; OnDisconnect aborts the engine
// requests. Every member is touched only on that strand (or in Start, before any output can run).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"
#include "server/stop_matcher.h"

namespace kiln::server {

// One prompt ready for the engine.
struct PreparedPrompt {
  std::vector<int32_t> token_ids;
  SamplingParams sampling;  // max_tokens resolved against max_model_len
  std::string echo_text;    // completions with echo: the prompt text
};

// The API error for a Submit failure (or a PrepareResponseFormat failure: the same errors) of a
// request of this kind: the prompt parameter is named, except for a full queue.
ApiError EngineSubmitError(const Status& status, ApiKind kind);

class Generation final : public std::enable_shared_from_this<Generation> {
 public:
  Generation(Engine* engine, ServerMetrics* metrics, std::shared_ptr<HttpResponder> responder,
             GenerateRequest request, ResponseMeta meta, int detokenizer_context_tokens);

  // Submits request.n engine requests per prompt. On failure nothing keeps running and the error
  // is returned (the caller sends it).
  std::optional<ApiError> Start(std::vector<PreparedPrompt> prompts);

 private:
  struct Choice {
    std::string request_id;
    std::unique_ptr<IncrementalDetokenizer> detokenizer;
    std::unique_ptr<StopMatcher> stop;
    ChoiceResult result;
    int num_tokens = 0;   // generated tokens consumed (up to a stop string)
    int text_offset = 0;  // completions logprobs: offset of the next token's text
    bool stopped_by_string = false;
    bool done = false;
    Usage usage;
    Status error;
  };

  void OnOutput(size_t choice_index, RequestOutput output);
  void OnDisconnect();
  void Finish();
  void SendChunk(size_t choice_index, const std::string& text,
                 const std::vector<PositionLogprobs>& logprobs, const std::string& finish_reason,
                 int text_offset);

  Engine* engine_;
  ServerMetrics* metrics_;
  std::shared_ptr<HttpResponder> responder_;
  GenerateRequest request_;
  ResponseMeta meta_;
  const Tokenizer* tokenizer_;
  int context_tokens_;
  std::vector<Choice> choices_;
  size_t num_done_ = 0;
  bool disconnected_ = false;
  bool finished_ = false;
};

}  // namespace kiln::server
