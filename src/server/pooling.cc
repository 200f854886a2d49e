#include "server/pooling.h"

#include <cmath>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>

#include "kiln/engine.h"
#include "server/openai_protocol.h"
#include "server/openai_server.h"

namespace kiln::server {
namespace {

// Submits a set of engine requests and calls `on_done` with their final outputs (in order) on
// the connection's strand once all finished. A failed request turns the response into its error.
class PoolingJob final : public std::enable_shared_from_this<PoolingJob> {
 public:
  using Done = std::function<void(std::vector<RequestOutput>&)>;
  PoolingJob(OpenAiServer* server, std::shared_ptr<HttpResponder> responder, Done on_done)
      : server_(server), responder_(std::move(responder)), on_done_(std::move(on_done)) {}

  std::optional<ApiError> Start(std::vector<Request> requests, const std::string& id) {
    outputs_.resize(requests.size());
    auto self = shared_from_this();
    // All inputs of one call go to the engine atomically, so they run as one batch.
    std::vector<OutputCallback> callbacks;
    for (size_t i = 0; i < requests.size(); ++i) {
      requests[i].request_id = id + "-" + std::to_string(i);
      ids_.push_back(requests[i].request_id);
      callbacks.push_back([self, i](RequestOutput out) {
        if (!out.finished) return;
        self->responder_->Post(
            [self, i, out = std::move(out)]() mutable { self->OnFinal(i, std::move(out)); });
      });
    }
    auto s = server_->engine()->SubmitBatch(std::move(requests), std::move(callbacks));
    if (!s.ok()) {
      failed_ = true;
      return ApiError::FromStatus(s.status(), "input");
    }
    responder_->OnDisconnect([self] {
      self->failed_ = true;
      for (const auto& rid : self->ids_) self->server_->engine()->Abort(rid);
    });
    return std::nullopt;
  }

 private:
  void OnFinal(size_t i, RequestOutput out) {
    if (failed_) return;
    outputs_[i] = std::move(out);
    if (++num_done_ < outputs_.size()) return;
    for (const auto& o : outputs_) {
      if (o.finish_reason == FinishReason::kError || o.finish_reason == FinishReason::kAbort) {
        failed_ = true;
        const Status st = o.error.ok() ? Status::Internal("the request was aborted") : o.error;
        return server_->SendApiError(*responder_, ApiError::FromStatus(st, "input"));
      }
    }
    on_done_(outputs_);
  }

  OpenAiServer* server_;
  std::shared_ptr<HttpResponder> responder_;
  Done on_done_;
  std::vector<RequestOutput> outputs_;
  std::vector<std::string> ids_;
  size_t num_done_ = 0;
  bool failed_ = false;
};

json UsageJson(const std::vector<RequestOutput>& outputs) {
  int prompt = 0;
  for (const auto& o : outputs) prompt += o.usage.prompt_tokens;
  return {{"prompt_tokens", prompt}, {"total_tokens", prompt}};
}

// Turns `input` into prompts: text and message lists are rendered/tokenized, id lists checked.
std::optional<ApiError> InputPrompts(OpenAiServer* server, const json& input, bool allow_messages,
                                     std::vector<std::vector<int32_t>>* out) {
  const Tokenizer* tok = server->engine()->tokenizer();
  const int vocab = server->engine()->model_info().vocab_size;
  const ApiError no_tokenizer =
      ApiError::BadRequest("the served model has no tokenizer: give 'input' as token ids", "input");
  auto messages_prompt = [&](const json& messages) -> std::optional<ApiError> {
    if (tok == nullptr) return no_tokenizer;
    GenerateRequest g;
    if (auto e = ParseChatRequest(json{{"messages", messages}}, &g)) return e;
    std::vector<int32_t> ids;
    if (auto e = server->RenderChatPrompt(g, &ids)) return e;
    out->push_back(std::move(ids));
    return std::nullopt;
  };
  if (allow_messages && input.is_array() && !input.empty() && input.front().is_object()) {
    return messages_prompt(input);
  }
  if (allow_messages && input.is_array() && !input.empty() && input.front().is_array() &&
      !input.front().empty() && input.front().front().is_object()) {
    if (input.size() > static_cast<size_t>(kMaxSequencesPerRequest)) {
      return ApiError::BadRequest("'input' holds " + std::to_string(input.size()) +
                                      " conversations; one request may run at most " +
                                      std::to_string(kMaxSequencesPerRequest),
                                  "input");
    }
    for (const auto& m : input) {
      if (auto e = messages_prompt(m)) return e;
    }
    return std::nullopt;
  }
  // The completions prompt shapes: string, strings, ids, id lists.
  GenerateRequest g;
  if (auto e = ParseCompletionRequest(json{{"prompt", input}}, &g)) {
    std::string msg = e->message;
    for (size_t p = msg.find("'prompt'"); p != std::string::npos; p = msg.find("'prompt'")) {
      msg.replace(p, 8, "'input'");
    }
    return ApiError::BadRequest(msg, "input");
  }
  for (auto& p : g.prompts) {
    if (p.is_text && p.text.empty()) {
      return ApiError::BadRequest("an input is empty (an empty string)", "input");
    }
    if (p.is_text) {
      if (tok == nullptr) return no_tokenizer;
      // Refused by its size alone, before the time to tokenize it is spent.
      if (Status s = server->generator().CheckPromptBytes(p.text.size()); !s.ok()) {
        return ApiError::FromStatus(s, "input");
      }
      out->push_back(tok->Encode(p.text, /*add_special_tokens=*/true));
    } else {
      if (auto e = CheckTokenIds(p.token_ids, vocab, "input")) return e;
      out->push_back(std::move(p.token_ids));
    }
  }
  for (const auto& ids : *out) {
    if (ids.empty()) return ApiError::BadRequest("an input is empty (0 tokens)", "input");
    if (static_cast<int>(ids.size()) > server->max_model_len()) {
      return ApiError::BadRequest("an input has " + std::to_string(ids.size()) +
                                      " tokens, more than max_model_len (" +
                                      std::to_string(server->max_model_len()) + ")",
                                  "input");
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<float> PoolHidden(const std::vector<float>& hidden, int hidden_size,
                              const std::string& pooling) {
  const size_t h = static_cast<size_t>(hidden_size);
  if (h == 0 || hidden.size() < h) return {};
  const size_t rows = hidden.size() / h;
  if (pooling == "first") return std::vector<float>(hidden.begin(), hidden.begin() + h);
  if (pooling == "mean") {
    std::vector<double> acc(h, 0.0);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t j = 0; j < h; ++j) acc[j] += hidden[r * h + j];
    }
    std::vector<float> out(h);
    for (size_t j = 0; j < h; ++j) out[j] = static_cast<float>(acc[j] / static_cast<double>(rows));
    return out;
  }
  return std::vector<float>(hidden.end() - static_cast<ptrdiff_t>(h), hidden.end());
}

void FinishEmbedding(std::vector<float>* v, int dimensions, bool normalize) {
  if (dimensions > 0 && static_cast<size_t>(dimensions) < v->size()) v->resize(dimensions);
  if (!normalize) return;
  double norm = 0.0;
  for (float x : *v) norm += static_cast<double>(x) * x;
  norm = std::sqrt(norm);
  if (norm > 0) {
    for (float& x : *v) x = static_cast<float>(x / norm);
  }
}

std::vector<double> SoftmaxOver(const std::vector<float>& logprobs) {
  std::vector<double> p(logprobs.size());
  if (logprobs.empty()) return p;
  double mx = logprobs[0];
  for (float x : logprobs) mx = std::max(mx, static_cast<double>(x));
  double sum = 0.0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp(logprobs[i] - mx);
  for (double& x : p) x /= sum;
  return p;
}

std::string Base64Floats(const std::vector<float>& v) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(v.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), v.data(), bytes.size());  // little-endian hosts only (x86, arm64)
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

void RunClassify(OpenAiServer* server, const HttpRequest& request,
                 std::shared_ptr<HttpResponder> responder) {
  json body;
  if (auto e = ParseJsonBody(request.body, &body)) return server->SendApiError(*responder, *e);
  const Tokenizer* tok = server->engine()->tokenizer();  // may be null: ids only
  const int vocab = server->engine()->model_info().vocab_size;
  if (auto e = server->CheckModelField(body)) return server->SendApiError(*responder, *e);
  const auto labels_it = body.find("labels");
  if (labels_it == body.end() || !labels_it->is_array() || labels_it->size() < 2) {
    return server->SendApiError(
        *responder,
        ApiError::BadRequest("'labels' must be an array of at least 2 strings", "labels"));
  }
  std::vector<std::string> labels;
  for (const auto& l : *labels_it) {
    if (!l.is_string() || l.get<std::string>().empty()) {
      return server->SendApiError(
          *responder, ApiError::BadRequest("'labels' must contain non-empty strings", "labels"));
    }
    labels.push_back(l.get<std::string>());
  }
  std::vector<int32_t> label_ids;
  if (const auto it = body.find("label_token_ids"); it != body.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != labels.size()) {
      return server->SendApiError(
          *responder,
          ApiError::BadRequest("'label_token_ids' must hold one id per label", "label_token_ids"));
    }
    for (const auto& v : *it) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab) {
        return server->SendApiError(
            *responder, ApiError::BadRequest("'label_token_ids' must be ids in the vocabulary "
                                             "(size " +
                                                 std::to_string(vocab) + ")",
                                             "label_token_ids"));
      }
      label_ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
  } else {
    if (tok == nullptr) {
      return server->SendApiError(*responder,
                                  ApiError::BadRequest("the served model has no tokenizer: give "
                                                       "'label_token_ids'",
                                                       "labels"));
    }
    for (const auto& l : labels) {
      const auto ids = tok->Encode(l, /*add_special_tokens=*/false);
      if (ids.empty()) {
        return server->SendApiError(
            *responder, ApiError::BadRequest("label '" + l + "' has no tokens", "labels"));
      }
      label_ids.push_back(ids[0]);
    }
  }
  std::map<int32_t, size_t> seen;
  for (size_t i = 0; i < label_ids.size(); ++i) {
    auto [it, inserted] = seen.emplace(label_ids[i], i);
    if (!inserted) {
      return server->SendApiError(
          *responder, ApiError::BadRequest("labels '" + labels[it->second] + "' and '" + labels[i] +
                                               "' start with the same token (id " +
                                               std::to_string(label_ids[i]) + ")",
                                           "labels"));
    }
  }
  const auto input = body.find("input");
  if (input == body.end() || input->is_null()) {
    return server->SendApiError(*responder, ApiError::BadRequest("'input' is required", "input"));
  }
  std::vector<std::vector<int32_t>> prompts;
  if (auto e = InputPrompts(server, *input, /*allow_messages=*/true, &prompts)) {
    return server->SendApiError(*responder, *e);
  }
  std::vector<Request> requests;
  for (auto& ids : prompts) {
    Request r;
    r.kind = RequestKind::kScore;
    r.prompt_token_ids = std::move(ids);
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = 1;
    r.sampling.chosen_logprob_token_ids = label_ids;
    requests.push_back(std::move(r));
  }
  const std::string id = server->NewId("classify-");
  auto job = std::make_shared<PoolingJob>(
      server, responder,
      [server, responder, labels, label_ids, id](std::vector<RequestOutput>& outputs) {
        json data = json::array();
        for (size_t i = 0; i < outputs.size(); ++i) {
          std::vector<float> lps(labels.size(), -INFINITY);
          for (const auto& t : outputs[i].score_logprobs) {
            for (size_t k = 0; k < label_ids.size(); ++k) {
              if (label_ids[k] == t.token_id) lps[k] = t.logprob;
            }
          }
          const auto probs = SoftmaxOver(lps);
          json pj = json::object(), lj = json::object();
          size_t best = 0;
          for (size_t k = 0; k < labels.size(); ++k) {
            pj[labels[k]] = probs[k];
            lj[labels[k]] = lps[k];
            if (probs[k] > probs[best]) best = k;
          }
          data.push_back({{"index", i},
                          {"label", labels[best]},
                          {"probs", std::move(pj)},
                          {"logprobs", std::move(lj)},
                          {"label_token_ids", label_ids}});
        }
        server->SendOk(*responder, DumpJson({{"id", id},
                                             {"object", "list"},
                                             {"created", static_cast<int64_t>(std::time(nullptr))},
                                             {"model", server->model_name()},
                                             {"data", std::move(data)},
                                             {"usage", UsageJson(outputs)}}));
      });
  if (auto e = job->Start(std::move(requests), id)) server->SendApiError(*responder, *e);
}

void RunEmbeddings(OpenAiServer* server, const HttpRequest& request,
                   std::shared_ptr<HttpResponder> responder) {
  json body;
  if (auto e = ParseJsonBody(request.body, &body)) return server->SendApiError(*responder, *e);
  if (auto e = server->CheckModelField(body)) return server->SendApiError(*responder, *e);
  if (const auto it = body.find("truncate_prompt_tokens"); it != body.end() && !it->is_null()) {
    return server->SendApiError(
        *responder, ApiError::BadRequest("'truncate_prompt_tokens' is not supported (inputs are "
                                         "embedded whole, or refused when too long)",
                                         "truncate_prompt_tokens"));
  }
  const EmbeddingHead* head = server->embedding_head();
  const int hidden_size = head ? head->output_size() : server->engine()->model_info().hidden_size;
  int dimensions = 0;
  if (const auto it = body.find("dimensions"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > hidden_size) {
      return server->SendApiError(
          *responder, ApiError::BadRequest(
                          "'dimensions' must be an integer in [1, " + std::to_string(hidden_size) +
                              "] (the " + (head ? "embedding head's" : "model's hidden") + " size)",
                          "dimensions"));
    }
    dimensions = static_cast<int>(it->get<int64_t>());
  }
  std::string encoding = "float";
  if (auto e = ReadOptionalString(body, "encoding_format", &encoding)) {
    return server->SendApiError(*responder, *e);
  }
  if (encoding != "float" && encoding != "base64") {
    return server->SendApiError(
        *responder,
        ApiError::BadRequest("'encoding_format' must be float or base64", "encoding_format"));
  }
  std::string pooling = "last";
  if (auto e = ReadOptionalString(body, "pooling", &pooling)) {
    return server->SendApiError(*responder, *e);
  }
  if (pooling != "last" && pooling != "mean" && pooling != "first") {
    return server->SendApiError(
        *responder, ApiError::BadRequest("'pooling' must be last, mean or first", "pooling"));
  }
  const auto norm_it = body.find("normalize");
  if (norm_it != body.end() && !norm_it->is_null() && !norm_it->is_boolean()) {
    return server->SendApiError(*responder,
                                ApiError::BadRequest("'normalize' must be a boolean", "normalize"));
  }
  const bool normalize = norm_it == body.end() || norm_it->is_null() || norm_it->get<bool>();
  const auto input = body.find("input");
  if (input == body.end() || input->is_null()) {
    return server->SendApiError(*responder, ApiError::BadRequest("'input' is required", "input"));
  }
  std::vector<std::vector<int32_t>> prompts;
  if (auto e = InputPrompts(server, *input, /*allow_messages=*/false, &prompts)) {
    return server->SendApiError(*responder, *e);
  }
  std::vector<Request> requests;
  for (auto& ids : prompts) {
    Request r;
    r.kind = RequestKind::kEmbed;
    r.prompt_token_ids = std::move(ids);
    r.return_all_hidden = pooling != "last";
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = 1;
    requests.push_back(std::move(r));
  }
  const std::string id = server->NewId("embd-");
  auto job = std::make_shared<PoolingJob>(
      server, responder,
      [server, responder, pooling, dimensions, normalize, encoding,
       head](std::vector<RequestOutput>& outputs) {
        json data = json::array();
        for (size_t i = 0; i < outputs.size(); ++i) {
          std::vector<float> v =
              PoolHidden(outputs[i].hidden_states, outputs[i].hidden_size, pooling);
          if (head != nullptr) v = head->Apply(v);
          FinishEmbedding(&v, dimensions, normalize);
          json e = {{"object", "embedding"}, {"index", i}};
          if (encoding == "base64") {
            e["embedding"] = Base64Floats(v);
          } else {
            e["embedding"] = v;
          }
          data.push_back(std::move(e));
        }
        server->SendOk(*responder, DumpJson({{"object", "list"},
                                             {"model", server->model_name()},
                                             {"data", std::move(data)},
                                             {"usage", UsageJson(outputs)}}));
      });
  if (auto e = job->Start(std::move(requests), id)) server->SendApiError(*responder, *e);
}

}  // namespace kiln::server
