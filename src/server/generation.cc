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

Generation::Generation(Engine* engine, ServerMetrics* metrics,
                       std::shared_ptr<HttpResponder> responder, GenerateRequest request,
                       ResponseMeta meta, int detokenizer_context_tokens)
    : engine_(engine),
      metrics_(metrics),
      responder_(std::move(responder)),
      request_(std::move(request)),
      meta_(std::move(meta)),
      tokenizer_(engine->tokenizer()),
      context_tokens_(detokenizer_context_tokens) {
  KILN_CHECK(tokenizer_ != nullptr);
}

std::optional<ApiError> Generation::Start(std::vector<PreparedPrompt> prompts) {
  const int n = request_.n;
  choices_.resize(prompts.size() * static_cast<size_t>(n));
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (int j = 0; j < n; ++j) {
      const size_t idx = p * static_cast<size_t>(n) + static_cast<size_t>(j);
      Choice& c = choices_[idx];
      c.request_id = meta_.id + "-" + std::to_string(idx);
      c.result.index = static_cast<int>(idx);
      c.detokenizer = tokenizer_->NewDetokenizer(request_.skip_special_tokens);
      // Feed the prompt's tail so the first output token decodes in context (e.g. keeps the
      // leading space SentencePiece pieces carry); that text is discarded.
      const auto& ids = prompts[p].token_ids;
      const size_t from =
          ids.size() > static_cast<size_t>(context_tokens_) ? ids.size() - context_tokens_ : 0;
      for (size_t k = from; k < ids.size(); ++k) c.detokenizer->Push(ids[k]);
      c.stop = std::make_unique<StopMatcher>(request_.stop, request_.include_stop_str_in_output);
      if (request_.echo) c.result.text = prompts[p].echo_text;
      c.text_offset = static_cast<int>(c.result.text.size());
    }
  }

  auto self = shared_from_this();
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (int j = 0; j < n; ++j) {
      const size_t idx = p * static_cast<size_t>(n) + static_cast<size_t>(j);
      Request r;
      r.request_id = choices_[idx].request_id;
      r.prompt_token_ids = prompts[p].token_ids;
      r.sampling = prompts[p].sampling;
      if (r.sampling.seed) r.sampling.seed = *r.sampling.seed + static_cast<uint64_t>(j);
      r.sampling.logprobs = request_.logprobs ? request_.top_logprobs : -1;
      r.sampling.chosen_logprob_token_ids = request_.logprob_token_ids;
      auto submitted = engine_->Submit(std::move(r), [self, idx](RequestOutput out) {
        self->responder_->Post(
            [self, idx, out = std::move(out)]() mutable { self->OnOutput(idx, std::move(out)); });
      });
      if (!submitted.ok()) {
        finished_ = true;
        for (size_t k = 0; k < idx; ++k) engine_->Abort(choices_[k].request_id);
        return EngineSubmitError(submitted.status(), request_.kind);
      }
    }
  }

  if (request_.stream) {
    metrics_->ObserveHttpStatus(200);
    responder_->StartStream(200, "text/event-stream");
    for (size_t idx = 0; idx < choices_.size(); ++idx) {
      const Choice& c = choices_[idx];
      if (request_.kind == ApiKind::kChat) {
        responder_->Write(SseEvent(
            RenderStreamChunk(meta_, request_, c.result.index, true, "", {}, 0, "", *tokenizer_)));
      } else if (request_.echo && !c.result.text.empty()) {
        SendChunk(idx, c.result.text, {}, "", 0);
      }
    }
  }
  responder_->OnDisconnect([self] { self->OnDisconnect(); });
  return std::nullopt;
}

void Generation::OnOutput(size_t choice_index, RequestOutput out) {
  if (finished_ || disconnected_) return;
  Choice& c = choices_[choice_index];
  if (c.done) return;
  std::string delta;
  std::vector<PositionLogprobs> delta_logprobs;
  const int delta_offset = c.text_offset;
  const size_t num_new = out.new_token_ids.size();
  for (size_t i = 0; i < num_new && !c.stopped_by_string; ++i) {
    const int32_t id = out.new_token_ids[i];
    ++c.num_tokens;
    if (request_.logprobs && i < out.logprobs.size()) {
      c.result.logprobs.push_back(out.logprobs[i]);
      delta_logprobs.push_back(out.logprobs[i]);
      c.text_offset += static_cast<int>(TokenDisplay(*tokenizer_, id).size());
    }
    // A stop token id (EOS or stop_token_ids) ends the text without appearing in it.
    const bool is_stop_token =
        out.finished && i + 1 == num_new && out.stop_token_id >= 0 && id == out.stop_token_id;
    if (is_stop_token && !request_.include_stop_str_in_output) continue;
    delta += c.stop->Push(c.detokenizer->Push(id));
    if (c.stop->stopped()) {
      c.stopped_by_string = true;
      engine_->Abort(c.request_id);
    }
  }
  const bool done = out.finished || c.stopped_by_string;
  std::string finish_reason;
  if (done) {
    if (!c.stopped_by_string) {
      delta += c.stop->Push(c.detokenizer->Flush());
      if (c.stop->stopped()) {
        c.stopped_by_string = true;
      } else {
        delta += c.stop->Flush();
      }
    }
    finish_reason = c.stopped_by_string ? "stop" : FinishReasonName(out.finish_reason);
    c.result.finish_reason = finish_reason;
    c.usage = out.usage;
    if (c.stopped_by_string) c.usage.completion_tokens = c.num_tokens;
    if (out.finish_reason == FinishReason::kError && !c.stopped_by_string) {
      c.error = out.error.ok() ? Status::Internal("the request failed") : out.error;
    }
    metrics_->ObserveRequest(out.time_to_first_token_s, out.elapsed_s, c.usage.completion_tokens,
                             finish_reason);
    c.done = true;
    ++num_done_;
  }
  c.result.text += delta;
  if (request_.stream && (!delta.empty() || !delta_logprobs.empty() || done)) {
    if (!c.error.ok()) {
      responder_->Write(SseEvent(ApiError::FromStatus(c.error).Body()));
    } else {
      SendChunk(choice_index, delta, delta_logprobs, finish_reason, delta_offset);
    }
  }
  if (num_done_ == choices_.size()) Finish();
}

void Generation::SendChunk(size_t choice_index, const std::string& text,
                           const std::vector<PositionLogprobs>& logprobs,
                           const std::string& finish_reason, int text_offset) {
  responder_->Write(
      SseEvent(RenderStreamChunk(meta_, request_, choices_[choice_index].result.index, false, text,
                                 logprobs, text_offset, finish_reason, *tokenizer_)));
}

void Generation::Finish() {
  if (finished_) return;
  finished_ = true;
  UsageTotals usage;
  const Choice* failed = nullptr;
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    if (i % static_cast<size_t>(request_.n) == 0) {  // prompt tokens count once per prompt
      usage.prompt_tokens += c.usage.prompt_tokens;
      usage.cached_tokens += c.usage.cached_tokens;
    }
    usage.completion_tokens += c.usage.completion_tokens;
    if (!c.error.ok() && failed == nullptr) failed = &c;
  }
  if (request_.stream) {
    if (request_.include_usage)
      responder_->Write(SseEvent(RenderUsageChunk(meta_, request_, usage)));
    responder_->Write(SseDone());
    responder_->End();
    return;
  }
  if (failed != nullptr) {
    const ApiError e = ApiError::FromStatus(failed->error);
    metrics_->ObserveHttpStatus(e.http_status);
    responder_->Send(e.http_status, "application/json", e.ToJson());
    return;
  }
  std::vector<ChoiceResult> results;
  results.reserve(choices_.size());
  for (auto& c : choices_) results.push_back(std::move(c.result));
  std::string body = request_.kind == ApiKind::kChat
                         ? RenderChatResponse(meta_, request_, results, usage, *tokenizer_)
                         : RenderCompletionResponse(meta_, request_, results, usage, *tokenizer_);
  metrics_->ObserveHttpStatus(200);
  responder_->Send(200, "application/json", std::move(body));
}

void Generation::OnDisconnect() {
  if (finished_ || disconnected_) return;
  disconnected_ = true;
  for (const auto& c : choices_) {
    if (!c.done) engine_->Abort(c.request_id);
  }
}

}  // namespace kiln::server
