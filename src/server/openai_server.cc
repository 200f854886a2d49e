#include "server/openai_server.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cctype>
#include <chrono>
#include <ctime>
#include <functional>
#include <random>
#include <string_view>

#include "server/generation.h"
#include "server/openai_protocol.h"
#include "server/pooling.h"

namespace kiln::server {
namespace {

void SendJson(ServerMetrics* metrics, HttpResponder& r, int status, std::string body,
              HttpHeaders headers = {}) {
  metrics->ObserveHttpStatus(status);
  r.Send(status, "application/json", std::move(body), std::move(headers));
}

void SendError(ServerMetrics* metrics, HttpResponder& r, const ApiError& e) {
  HttpHeaders headers;
  if (e.retry_after_s > 0) headers.emplace_back("Retry-After", std::to_string(e.retry_after_s));
  if (e.http_status == 401) headers.emplace_back("WWW-Authenticate", "Bearer");
  SendJson(metrics, r, e.http_status, e.ToJson(), std::move(headers));
}

// A server without a tokenizer can never serve text: a permanent condition, so 400 (not 503).
ApiError NoTokenizerError(std::string param) {
  ApiError e = ApiError::BadRequest(
      "the served model has no tokenizer, so this route cannot be served; start the server with "
      "--tokenizer (/v1/embeddings and /v1/classify also accept token ids)",
      std::move(param));
  e.code = "no_tokenizer";
  return e;
}

// The credentials of an "Authorization: Bearer <token>" header. The scheme name is
// case-insensitive (RFC 7235 §2.1) and may be followed by more than one space.
bool BearerToken(std::string_view header, std::string_view* token) {
  constexpr std::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return false;
  }
  size_t i = kScheme.size();
  if (header[i] != ' ' && header[i] != '\t') return false;
  while (i < header.size() && (header[i] == ' ' || header[i] == '\t')) ++i;
  *token = header.substr(i);
  return !token->empty();
}

// Constant-time comparison (the API key must not leak through timing).
bool SecretEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return diff == 0 && !b.empty();
}

}  // namespace

// Threads for work kept off the I/O threads: grammar compiles, request parsing and tokenization.
class WorkerPool final {
 public:
  explicit WorkerPool(int num_threads) : pool_(static_cast<size_t>(std::max(1, num_threads))) {}
  ~WorkerPool() { Join(); }
  void Post(std::function<void()> fn) { boost::asio::post(pool_, std::move(fn)); }
  void Join() { pool_.join(); }  // queued compiles still run

 private:
  boost::asio::thread_pool pool_;
};

OpenAiServer::OpenAiServer(Engine* engine, OpenAiServerOptions options)
    : engine_(engine),
      options_(std::move(options)),
      generator_(std::make_unique<Generator>(
          engine, GeneratorOptions{options_.chat_template, options_.detokenizer_context_tokens})),
      compile_pool_(std::make_unique<WorkerPool>(options_.num_compile_threads)),
      tokenize_pool_(std::make_unique<WorkerPool>(options_.num_tokenize_threads)) {
  model_name_ = options_.served_model_name.empty() ? engine_->model_info().served_model_name
                                                   : options_.served_model_name;
  id_salt_ = std::random_device{}();
  id_salt_ = (id_salt_ << 32) ^ std::random_device{}();
}

OpenAiServer::~OpenAiServer() = default;

std::string OpenAiServer::NewId(const char* prefix) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%016llx%08llx", prefix,
                static_cast<unsigned long long>(id_salt_),
                static_cast<unsigned long long>(next_id_++));
  return buf;
}

std::optional<ApiError> OpenAiServer::CheckModel(const std::string& model) const {
  if (model.empty() || model == model_name_) return std::nullopt;
  ApiError e = ApiError::NotFound("The model `" + model + "` does not exist.", "model_not_found");
  e.param = "model";
  return e;
}

std::optional<ApiError> OpenAiServer::CheckModelField(const nlohmann::ordered_json& body) const {
  const auto it = body.find("model");
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return ApiError::BadRequest("'model' must be a string", "model");
  return CheckModel(it->get<std::string>());
}

void OpenAiServer::Handle(HttpRequest request, std::shared_ptr<HttpResponder> responder) {
  struct Route {
    const char* path;
    const char* method;
    bool needs_auth;
    void (OpenAiServer::*fn)(const HttpRequest&, std::shared_ptr<HttpResponder>);
    bool off_io_thread = false;  // parses a body / tokenizes: runs on the worker pool
  };
  static const Route kRoutes[] = {
      {"/v1/chat/completions", "POST", true, &OpenAiServer::HandleChat, true},
      {"/v1/completions", "POST", true, &OpenAiServer::HandleCompletion, true},
      {"/v1/models", "GET", true, &OpenAiServer::HandleModels},
      {"/health", "GET", false, &OpenAiServer::HandleHealth},
      {"/metrics", "GET", false, &OpenAiServer::HandleMetrics},
      {"/tokenize", "POST", true, &OpenAiServer::HandleTokenize, true},
      {"/detokenize", "POST", true, &OpenAiServer::HandleDetokenize, true},
      {"/v1/classify", "POST", true, &OpenAiServer::HandleClassify, true},
      {"/v1/embeddings", "POST", true, &OpenAiServer::HandleEmbeddings, true},
  };
  const Route* route = nullptr;
  for (const auto& r : kRoutes) {
    if (request.path == r.path) route = &r;
  }
  if (route == nullptr && request.path.rfind("/v1/models/", 0) == 0) {
    static const Route kModel = {"/v1/models/", "GET", true, &OpenAiServer::HandleModels};
    route = &kModel;
  }
  const OpenAiServerOptions::ExtraRoute* extra = nullptr;
  for (const auto& x : options_.extra_routes) {
    if (route == nullptr && request.path.rfind(x.prefix, 0) == 0) extra = &x;
  }
  if (route == nullptr && extra == nullptr) {
    ApiError e = ApiError::NotFound("no route for " + request.method + " " + request.path,
                                    "route_not_found");
    return SendError(&metrics_, *responder, e);
  }
  if ((extra != nullptr || route->needs_auth) && !options_.api_key.empty()) {
    std::string_view token;
    const bool ok = BearerToken(request.authorization, &token) &&
                    SecretEquals(std::string(token), options_.api_key);
    if (!ok) {
      ApiError e = ApiError::FromStatus(Status::Unauthenticated(
          request.authorization.empty() ? "missing API key: send 'Authorization: Bearer <key>'"
                                        : "invalid API key"));
      e.code = "invalid_api_key";
      return SendError(&metrics_, *responder, e);
    }
  }
  if (extra != nullptr) return extra->handler(request, std::move(responder));
  // HEAD is GET without the body (RFC 9110 §9.3.2; the transport leaves the body out).
  const bool head_of_get = request.method == "HEAD" && std::string_view(route->method) == "GET";
  if (request.method != route->method && !head_of_get) {
    ApiError e;
    e.http_status = 405;
    e.message = "method " + request.method + " is not allowed for " + request.path + "; use " +
                route->method;
    e.code = "method_not_allowed";
    metrics_.ObserveHttpStatus(405);
    responder->Send(405, "application/json", e.ToJson(), {{"Allow", route->method}});
    return;
  }
  if (route->off_io_thread) {
    RunOffIoThread([this, fn = route->fn, request = std::move(request),
                    responder = std::move(responder)]() mutable {
      (this->*fn)(request, std::move(responder));
    });
    return;
  }
  (this->*(route->fn))(request, std::move(responder));
}

void OpenAiServer::RunOffIoThread(std::function<void()> fn) {
  if (compiles_stopped_) return fn();
  tokenize_pool_->Post(std::move(fn));
}

void OpenAiServer::HandleHealth(const HttpRequest&, std::shared_ptr<HttpResponder> responder) {
  if (draining_) {
    ApiError e = ApiError::FromStatus(Status::Unavailable("the server is shutting down"));
    return SendError(&metrics_, *responder, e);
  }
  SendJson(&metrics_, *responder, 200, "{}");
}

void OpenAiServer::HandleMetrics(const HttpRequest&, std::shared_ptr<HttpResponder> responder) {
  metrics_.ObserveHttpStatus(200);
  responder->Send(200, "text/plain; version=0.0.4; charset=utf-8",
                  metrics_.Render(engine_->Metrics(), model_name_));
}

void OpenAiServer::HandleModels(const HttpRequest& request,
                                std::shared_ptr<HttpResponder> responder) {
  const json model = {{"id", model_name_},
                      {"object", "model"},
                      {"created", static_cast<int64_t>(std::time(nullptr))},
                      {"owned_by", "kiln"},
                      {"root", model_name_},
                      {"max_model_len", max_model_len()}};
  if (request.path != "/v1/models") {
    const std::string id = request.path.substr(std::string("/v1/models/").size());
    if (auto e = CheckModel(id)) return SendError(&metrics_, *responder, *e);
    return SendJson(&metrics_, *responder, 200, DumpJson(model));
  }
  SendJson(&metrics_, *responder, 200,
           DumpJson({{"object", "list"}, {"data", json::array({model})}}));
}

void OpenAiServer::HandleChat(const HttpRequest& request,
                              std::shared_ptr<HttpResponder> responder) {
  HandleGenerate(request, std::move(responder), /*chat=*/true);
}

void OpenAiServer::HandleCompletion(const HttpRequest& request,
                                    std::shared_ptr<HttpResponder> responder) {
  HandleGenerate(request, std::move(responder), /*chat=*/false);
}

std::optional<ApiError> OpenAiServer::RenderChatPrompt(const GenerateRequest& g,
                                                       std::vector<int32_t>* ids) const {
  std::string field;
  auto rendered = generator_->RenderChat(g.messages, g.chat_options, g.add_special_tokens, &field);
  if (!rendered.ok()) return ApiError::FromStatus(rendered.status(), field);
  *ids = std::move(rendered).value();
  return std::nullopt;
}

std::optional<ApiError> OpenAiServer::PreparePrompts(GenerateRequest* g,
                                                     PreparedGeneration* out) const {
  std::string field;
  auto prepared = generator_->Prepare(ToGenerationRequest(g), &field);
  if (!prepared.ok()) return ApiError::FromStatus(prepared.status(), field);
  *out = std::move(prepared).value();
  return std::nullopt;
}

void OpenAiServer::HandleGenerate(const HttpRequest& request,
                                  std::shared_ptr<HttpResponder> responder, bool chat) {
  json body;
  if (auto e = ParseJsonBody(request.body, &body)) return SendError(&metrics_, *responder, *e);
  GenerateRequest g;
  if (auto e = chat ? ParseChatRequest(body, &g) : ParseCompletionRequest(body, &g)) {
    return SendError(&metrics_, *responder, *e);
  }
  if (auto e = CheckModel(g.model)) return SendError(&metrics_, *responder, *e);
  if (engine_->tokenizer() == nullptr) {  // permanent for this server: 400, not 503
    return SendError(&metrics_, *responder, NoTokenizerError(chat ? "messages" : "prompt"));
  }
  PreparedGeneration prepared;
  if (auto e = PreparePrompts(&g, &prepared)) return SendError(&metrics_, *responder, *e);
  struct Pending {
    GenerateRequest g;
    PreparedGeneration prepared;
    Status compiled;
  };
  auto pending = std::make_shared<Pending>(Pending{std::move(g), std::move(prepared), {}});
  // Generations start on the connection's strand, so that their events follow the stream's head.
  if (pending->g.sampling.response_format.type == ResponseFormat::Type::kText ||
      compiles_stopped_) {
    return responder->Post([this, responder, pending] {
      StartGeneration(responder, std::move(pending->g), std::move(pending->prepared));
    });
  }
  // Compile the grammar on the compile pool (into the engine's cache), then submit on the strand.
  compile_pool_->Post([this, responder, pending] {
    pending->compiled = engine_->PrepareResponseFormat(pending->g.sampling.response_format);
    responder->Post([this, responder, pending] {
      if (!pending->compiled.ok()) {
        ApiError e = EngineSubmitError(pending->compiled, pending->g.kind);
        if (pending->compiled.code() != StatusCode::kResourceExhausted) {
          e.param = pending->g.structured_param;  // the field whose grammar failed to compile
        }
        return SendError(&metrics_, *responder, e);
      }
      StartGeneration(responder, std::move(pending->g), std::move(pending->prepared));
    });
  });
}

void OpenAiServer::StopCompiles() {
  compiles_stopped_ = true;
  tokenize_pool_->Join();
  compile_pool_->Join();
}

void OpenAiServer::StartGeneration(std::shared_ptr<HttpResponder> responder, GenerateRequest g,
                                   PreparedGeneration prepared) {
  const bool chat = g.kind == ApiKind::kChat;
  ResponseMeta meta{NewId(chat ? "chatcmpl-" : "cmpl-"), static_cast<int64_t>(std::time(nullptr)),
                    model_name_};
  auto gen = std::make_shared<GenerationResponse>(generator_.get(), &metrics_, responder,
                                                  std::move(g), std::move(meta));
  if (auto e = gen->Start(std::move(prepared))) {
    if (e->retry_after_s > 0) e->retry_after_s = options_.retry_after_s;
    SendError(&metrics_, *responder, *e);
  }
}

void OpenAiServer::HandleTokenize(const HttpRequest& request,
                                  std::shared_ptr<HttpResponder> responder) {
  json body;
  if (auto e = ParseJsonBody(request.body, &body)) return SendError(&metrics_, *responder, *e);
  const Tokenizer* tok = engine_->tokenizer();
  if (tok == nullptr) {
    return SendError(&metrics_, *responder, NoTokenizerError(""));
  }
  bool return_token_strs = false;
  if (auto e = ReadOptionalBool(body, "return_token_strs", &return_token_strs)) {
    return SendError(&metrics_, *responder, *e);
  }
  std::vector<int32_t> ids;
  if (body.contains("messages")) {
    GenerateRequest g;
    if (auto e = ParseChatRequest(body, &g)) return SendError(&metrics_, *responder, *e);
    if (auto e = CheckModel(g.model)) return SendError(&metrics_, *responder, *e);
    if (auto e = RenderChatPrompt(g, &ids)) return SendError(&metrics_, *responder, *e);
  } else {
    const auto prompt = body.find("prompt");
    if (prompt == body.end() || !prompt->is_string()) {
      return SendError(
          &metrics_, *responder,
          ApiError::BadRequest("'prompt' (a string) or 'messages' is required", "prompt"));
    }
    if (auto e = CheckModelField(body)) return SendError(&metrics_, *responder, *e);
    bool add_special = true;
    if (const auto it = body.find("add_special_tokens"); it != body.end() && !it->is_null()) {
      if (!it->is_boolean()) {
        return SendError(
            &metrics_, *responder,
            ApiError::BadRequest("'add_special_tokens' must be a boolean", "add_special_tokens"));
      }
      add_special = it->get<bool>();
    }
    ids = tok->Encode(prompt->get<std::string>(), add_special);
  }
  json out = {{"count", ids.size()}, {"max_model_len", max_model_len()}, {"tokens", ids}};
  if (return_token_strs) {
    json strs = json::array();
    for (int32_t id : ids) strs.push_back(tok->IdToPiece(id));
    out["token_strs"] = std::move(strs);
  } else {
    out["token_strs"] = nullptr;
  }
  SendJson(&metrics_, *responder, 200, DumpJson(out));
}

void OpenAiServer::HandleDetokenize(const HttpRequest& request,
                                    std::shared_ptr<HttpResponder> responder) {
  json body;
  if (auto e = ParseJsonBody(request.body, &body)) return SendError(&metrics_, *responder, *e);
  const Tokenizer* tok = engine_->tokenizer();
  if (tok == nullptr) {
    return SendError(&metrics_, *responder, NoTokenizerError(""));
  }
  const auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array()) {
    return SendError(
        &metrics_, *responder,
        ApiError::BadRequest("'tokens' (an array of token ids) is required", "tokens"));
  }
  std::vector<int32_t> ids;
  for (const auto& t : *tokens) {
    if (!t.is_number_integer()) {
      return SendError(&metrics_, *responder,
                       ApiError::BadRequest("'tokens' must contain integers", "tokens"));
    }
    const int64_t v = t.get<int64_t>();
    if (v < 0 || v > INT32_MAX) {
      return SendError(
          &metrics_, *responder,
          ApiError::BadRequest("token id " + std::to_string(v) + " is outside the vocabulary",
                               "tokens"));
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  if (auto e = CheckTokenIds(ids, tok->vocab_size(), "tokens")) {
    return SendError(&metrics_, *responder, *e);
  }
  auto text = tok->Decode(ids, /*skip_special_tokens=*/false);
  if (!text.ok()) return SendError(&metrics_, *responder, ApiError::FromStatus(text.status()));
  SendJson(&metrics_, *responder, 200, DumpJson({{"prompt", *text}}));
}

void OpenAiServer::HandleClassify(const HttpRequest& request,
                                  std::shared_ptr<HttpResponder> responder) {
  RunClassify(this, request, std::move(responder));
}

void OpenAiServer::HandleEmbeddings(const HttpRequest& request,
                                    std::shared_ptr<HttpResponder> responder) {
  RunEmbeddings(this, request, std::move(responder));
}

void OpenAiServer::SendApiError(HttpResponder& responder, const ApiError& error) {
  SendError(&metrics_, responder, error);
}

void OpenAiServer::SendOk(HttpResponder& responder, std::string body) {
  SendJson(&metrics_, responder, 200, std::move(body));
}

}  // namespace kiln::server
