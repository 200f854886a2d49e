// GenerationResponse: one /v1/chat/completions or /v1/completions request while the engine runs
// it, as the HTTP side sees it: it starts a kiln::Generation (include/kiln/generation.h: n
// choices, detokenization, stop strings, logprobs, usage) and renders its events as one JSON
// response or an SSE stream. It holds no generation logic of its own.
//
// Threading: created and started on a connection's strand; the Generation's events run on that
// strand (its executor is HttpResponder::Post), so every member is touched only there. A
// disconnect cancels the Generation; events after it are ignored (nothing more is written and no
// request metrics are recorded).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "kiln/generation.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"

namespace kiln::server {

// The API error for a Submit failure (or a PrepareResponseFormat failure: the same errors) of a
// request of this kind: the prompt parameter is named, except for a full queue.
ApiError EngineSubmitError(const Status& status, ApiKind kind);

// The kiln::GenerationRequest for a parsed API request (prompts and messages are moved out).
GenerationRequest ToGenerationRequest(GenerateRequest* request);

class GenerationResponse final : public std::enable_shared_from_this<GenerationResponse> {
 public:
  GenerationResponse(const Generator* generator, ServerMetrics* metrics,
                     std::shared_ptr<HttpResponder> responder, GenerateRequest request,
                     ResponseMeta meta);

  // Submits every choice. On failure nothing keeps running and the error is returned (the caller
  // sends it).
  std::optional<ApiError> Start(PreparedGeneration prepared);

 private:
  void OnDelta(const GenerationDelta& delta, const GenerationChoice& choice);
  void OnDone(const GenerationResult& result);
  void SendChunk(int index, const std::string& text, const std::vector<PositionLogprobs>& logprobs,
                 const std::string& finish_reason, int text_offset,
                 const json& stop_reason = nullptr);

  const Generator* generator_;
  ServerMetrics* metrics_;
  std::shared_ptr<HttpResponder> responder_;
  GenerateRequest request_;
  ResponseMeta meta_;
  bool disconnected_ = false;
  // Streamed completions with echo and logprobs: the echoed prompt goes out with its logprobs,
  // which come with a choice's first engine output, so its chunk waits for that (per choice).
  std::vector<std::optional<std::string>> pending_echo_;  // [choice]: set while it waits
};

}  // namespace kiln::server
