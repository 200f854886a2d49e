// OpenAiServer: the OpenAI-compatible endpoints over one kiln::Engine. It is the HttpHandler given
// to HttpServer: it routes, authenticates, parses and validates (openai_protocol.h), renders chat
// templates and tokenizes, submits to the engine, and turns engine outputs into JSON or SSE.
//
// Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
// GET /metrics, POST /tokenize, POST /detokenize, POST /v1/classify, POST /v1/embeddings.
//
// Threading: Handle() runs on a connection's strand. A structured request's grammar is compiled on
// a small compile pool (Engine::PrepareResponseFormat; a large schema takes up to seconds), not on
// the I/O thread, and the request resumes on its strand when that is done: an invalid schema is
// still a 400 before anything is streamed, and other connections on the same I/O thread keep being
// served meanwhile. Engine outputs arrive on the engine's output
// thread; the callback only posts them to the connection's strand, where detokenization, stop
// strings and rendering happen (never on the engine thread). All per-request state is touched only
// on that strand. A client that disconnects before its response completes gets its engine requests
// aborted (their KV blocks are released by the engine).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/engine.h"
#include "server/api_error.h"
#include "server/embedding_head.h"
#include "server/http_server.h"
#include "server/metrics.h"

namespace kiln::server {

struct OpenAiServerOptions {
  std::string api_key;            // non-empty → /v1/*, /tokenize, /detokenize need the bearer
  std::string served_model_name;  // empty → Engine::model_info().served_model_name
  std::string chat_template;      // non-empty → overrides the tokenizer's chat template
  int retry_after_s = 1;          // Retry-After on 503 (queue full)
  int detokenizer_context_tokens = 4;  // prompt tokens fed to a detokenizer before the output
  // Projection applied to pooled embeddings (POST /v1/embeddings); null → none.
  std::shared_ptr<const EmbeddingHead> embedding_head;
  int num_compile_threads = 2;  // grammar compiles of structured requests (response_format)
};

struct GenerateRequest;
struct PreparedPrompt;
class CompilePool;

class OpenAiServer final {
 public:
  // `engine` must outlive this object and every request it started.
  OpenAiServer(Engine* engine, OpenAiServerOptions options);
  ~OpenAiServer();
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  void Handle(HttpRequest request, std::shared_ptr<HttpResponder> responder);
  // Waits for the grammar compiles in flight (they use the engine: call before destroying it).
  // Structured requests after this compile on the calling thread.
  void StopCompiles();
  // While draining, /health answers 503 (load balancers stop sending).
  void SetDraining(bool draining) { draining_ = draining; }
  const std::string& model_name() const { return model_name_; }
  ServerMetrics& metrics() { return metrics_; }

  // For the pooling endpoints (pooling.cc).
  Engine* engine() const { return engine_; }
  const EmbeddingHead* embedding_head() const { return options_.embedding_head.get(); }
  int max_model_len() const;
  // Text longer than this cannot fit max_model_len tokens: rejected before tokenizing, and the
  // bound on a chat template's rendered size.
  size_t max_prompt_bytes() const;
  // context_length_exceeded (400) for a prompt text of num_bytes over max_prompt_bytes().
  std::optional<ApiError> CheckPromptBytes(size_t num_bytes, const char* param) const;
  std::string NewId(const char* prefix);
  // 404 unless `model` is empty or the served name.
  std::optional<ApiError> CheckModel(const std::string& model) const;
  // Renders g.messages with the chat template and tokenizes.
  std::optional<ApiError> RenderChatPrompt(const GenerateRequest& g,
                                           std::vector<int32_t>* ids) const;
  void SendApiError(HttpResponder& responder, const ApiError& error);
  void SendOk(HttpResponder& responder, std::string body);

 private:
  using Handler = void (OpenAiServer::*)(const HttpRequest&, std::shared_ptr<HttpResponder>);
  void HandleChat(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void HandleCompletion(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void HandleGenerate(const HttpRequest& request, std::shared_ptr<HttpResponder> responder,
                      bool chat);
  void HandleHealth(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void HandleMetrics(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void HandleModels(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void HandleTokenize(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void HandleDetokenize(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void HandleClassify(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  void HandleEmbeddings(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  // Tokenizes every prompt, checks ids and lengths, resolves max_tokens per prompt.
  std::optional<ApiError> PreparePrompts(GenerateRequest* g,
                                         std::vector<PreparedPrompt>* out) const;
  void StartGeneration(std::shared_ptr<HttpResponder> responder, GenerateRequest g,
                       std::vector<PreparedPrompt> prompts);

  Engine* engine_;
  OpenAiServerOptions options_;
  std::string model_name_;
  ServerMetrics metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> compiles_stopped_{false};
  std::atomic<uint64_t> next_id_{0};
  uint64_t id_salt_ = 0;
  size_t max_token_bytes_ = 0;                 // the longest token's text (0 without a tokenizer)
  std::unique_ptr<CompilePool> compile_pool_;  // last: joined first, while the rest is alive
};

}  // namespace kiln::server
