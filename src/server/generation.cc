#include "server/generation.h"

#include "common/check.h"
#include "kiln/output.h"

namespace kiln::server {

ApiError EngineSubmitError(const Status& status, ApiKind kind) {
  if (status.code() == StatusCode::kResourceExhausted) return ApiError::FromStatus(status, "");
  std::string param = EngineErrorParam(status.message());  // e.g. "top_p must be in ..."
  if (param.empty()) param = kind == ApiKind::kChat ? "messages" : "prompt";
  return ApiError::FromStatus(status, std::move(param));
}

GenerationRequest ToGenerationRequest(GenerateRequest* g) {
  GenerationRequest r;
  if (g->kind == ApiKind::kChat) {
    r.messages = std::move(g->messages);
    r.chat_options = g->chat_options;
  } else {
    for (auto& p : g->prompts) {
      r.prompts.push_back(p.is_text ? GenerationPrompt::Text(std::move(p.text))
                                    : GenerationPrompt::TokenIds(std::move(p.token_ids)));
    }
    g->prompts.clear();
  }
  r.add_special_tokens = g->add_special_tokens;
  r.sampling = g->sampling;
  r.sampling.logprobs = g->logprobs ? g->top_logprobs : -1;
  r.sampling.chosen_logprob_token_ids = g->logprob_token_ids;
  // Completions' echo + logprobs: the prompt tokens' logprobs come first (lm-eval's loglikelihood).
  r.sampling.prompt_logprobs =
      g->kind != ApiKind::kChat && g->echo && g->logprobs ? g->top_logprobs : -1;
  r.logprob_token_strings = g->logprob_token_strings;
  r.fill_max_tokens = !g->max_tokens_set;
  r.n = g->n;
  r.stop = g->stop;
  r.include_stop_str_in_output = g->include_stop_str_in_output;
  r.skip_special_tokens = g->skip_special_tokens;
  r.echo = g->echo;
  r.priority = g->priority;
  r.cache_salt = g->cache_salt;
  return r;
}

GenerationResponse::GenerationResponse(const Generator* generator, ServerMetrics* metrics,
                                       std::shared_ptr<HttpResponder> responder,
                                       GenerateRequest request, ResponseMeta meta)
    : generator_(generator),
      metrics_(metrics),
      responder_(std::move(responder)),
      request_(std::move(request)),
      meta_(std::move(meta)) {
  KILN_CHECK(generator_->tokenizer() != nullptr);
}

std::optional<ApiError> GenerationResponse::Start(PreparedGeneration prepared) {
  auto self = shared_from_this();
  const size_t num_choices = prepared.num_choices();
  const int n = prepared.request.n;
  std::vector<std::string> echo(num_choices);
  for (size_t idx = 0; idx < num_choices; ++idx) {
    echo[idx] = prepared.prompts[idx / static_cast<size_t>(n)].echo_text;
  }
  prepared.request.request_id = meta_.id;
  GenerationCallbacks callbacks;
  callbacks.executor = [responder = responder_](std::function<void()> fn) {
    responder->Post(std::move(fn));
  };
  callbacks.on_delta = [self](const GenerationDelta& d, const GenerationChoice& c) {
    self->OnDelta(d, c);
  };
  callbacks.on_done = [self](const GenerationResult& r) { self->OnDone(r); };
  auto started = generator_->Start(std::move(prepared), std::move(callbacks));
  if (!started.ok()) return EngineSubmitError(started.status(), request_.kind);
  std::shared_ptr<Generation> generation = std::move(started).value();

  if (request_.stream) {
    metrics_->ObserveHttpStatus(200);
    responder_->StartStream(200, "text/event-stream");
    for (size_t idx = 0; idx < num_choices; ++idx) {
      if (request_.kind == ApiKind::kChat) {
        // echo: the continued final assistant message comes first, as in the non-streamed reply.
        responder_->Write(SseEvent(RenderStreamChunk(meta_, request_, static_cast<int>(idx), true,
                                                     request_.echo ? echo[idx] : "", {}, 0, "",
                                                     *generator_->tokenizer())));
      } else if (request_.echo && request_.logprobs) {
        pending_echo_.resize(num_choices);
        pending_echo_[idx] = echo[idx];
      } else if (request_.echo && !echo[idx].empty()) {
        SendChunk(static_cast<int>(idx), echo[idx], {}, "", 0);
      }
    }
  }
  responder_->OnDisconnect([self, generation] {
    self->disconnected_ = true;
    generation->Cancel();
  });
  return std::nullopt;
}

void GenerationResponse::OnDelta(const GenerationDelta& delta, const GenerationChoice& choice) {
  if (disconnected_) return;
  std::string finish_reason;
  if (delta.finished) {
    finish_reason = FinishReasonName(delta.finish_reason);
    metrics_->ObserveRequest(choice.time_to_first_token_s, choice.elapsed_s,
                             choice.usage.completion_tokens, finish_reason);
  }
  if (!request_.stream) return;
  const size_t idx = static_cast<size_t>(delta.index);
  if (idx < pending_echo_.size() && pending_echo_[idx]) {
    json chunk = RenderStreamChunk(meta_, request_, delta.index, false, *pending_echo_[idx], {}, 0,
                                   "", *generator_->tokenizer());
    chunk["choices"][0]["logprobs"] = RenderEchoedCompletionLogprobs(
        choice.prompt_token_ids, delta.prompt_logprobs, {}, *generator_->tokenizer(),
        request_.top_logprobs, choice.echo_chars);
    responder_->Write(SseEvent(chunk));
    pending_echo_[idx].reset();
    if (delta.text.empty() && delta.logprobs.empty() && !delta.finished) return;
  }
  if (!delta.error.ok()) {
    responder_->Write(SseEvent(ApiError::FromStatus(delta.error).Body()));
  } else {
    SendChunk(delta.index, delta.text, delta.logprobs, finish_reason, delta.text_offset,
              delta.finished ? StopReason(request_, choice.matched_stop, choice.stop_token_id)
                             : json(nullptr));
  }
}

void GenerationResponse::SendChunk(int index, const std::string& text,
                                   const std::vector<PositionLogprobs>& logprobs,
                                   const std::string& finish_reason, int text_offset,
                                   const json& stop_reason) {
  responder_->Write(
      SseEvent(RenderStreamChunk(meta_, request_, index, false, text, logprobs, text_offset,
                                 finish_reason, *generator_->tokenizer(), stop_reason)));
}

void GenerationResponse::OnDone(const GenerationResult& result) {
  if (disconnected_) return;
  const UsageTotals usage{result.usage.prompt_tokens, result.usage.completion_tokens,
                          result.usage.cached_tokens};
  if (request_.stream) {
    if (request_.include_usage) {
      responder_->Write(SseEvent(RenderUsageChunk(meta_, request_, usage)));
    }
    responder_->Write(SseDone());
    responder_->End();
    return;
  }
  if (!result.error.ok()) {
    const ApiError e = ApiError::FromStatus(result.error);
    metrics_->ObserveHttpStatus(e.http_status);
    responder_->Send(e.http_status, "application/json", e.ToJson());
    return;
  }
  std::vector<ChoiceResult> results;
  results.reserve(result.choices.size());
  for (const auto& c : result.choices) {
    results.push_back({c.index, c.text, c.logprobs, FinishReasonName(c.finish_reason),
                       c.prompt_token_ids, c.prompt_logprobs, c.echo_chars,
                       StopReason(request_, c.matched_stop, c.stop_token_id)});
  }
  const Tokenizer& tok = *generator_->tokenizer();
  std::string body = request_.kind == ApiKind::kChat
                         ? RenderChatResponse(meta_, request_, results, usage, tok)
                         : RenderCompletionResponse(meta_, request_, results, usage, tok);
  metrics_->ObserveHttpStatus(200);
  responder_->Send(200, "application/json", std::move(body));
}

}  // namespace kiln::server
