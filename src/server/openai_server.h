// OpenAiServer: the OpenAI-compatible endpoints over one kiln::Engine. It is the HttpHandler given
// to HttpServer: it routes, authenticates, parses and validates (openai_protocol.h), renders chat
// templates and tokenizes, submits to the engine, and turns engine outputs into JSON or SSE.
//
// Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
// GET /metrics, POST /tokenize, POST /detokenize, POST /v1/classify, POST /v1/embeddings.
//
// Threading: Handle() runs on a connection's strand (an HTTP I/O thread) and does only cheap work
// there (routing, auth, /health, /metrics, /v1/models). Routes that parse large bodies, render chat
// templates or tokenize (completions, chat, /tokenize, /detokenize, classify, embeddings) run on
// a worker pool (num_tokenize_threads), so a 100k-token prompt never stalls other connections on
// the same I/O thread. A structured request's grammar is then compiled on a small compile pool
// (Engine::PrepareResponseFormat; a large schema takes up to seconds), and a generation resumes
// on its strand to start: an invalid schema is still a 400 before anything is streamed. Text
// generation itself is kiln::Generator's (include/kiln/generation.h): its events (detokenization,
// stop strings) run on the connection's strand, never on the engine thread. A client that
// disconnects before its response completes gets its engine requests aborted (their KV blocks
// are released by the engine).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/engine.h"
#include "kiln/generation.h"
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
  // Parsing, chat-template rendering and tokenization of request bodies, off the I/O threads.
  int num_tokenize_threads = 4;
  // Routes another component serves under a path prefix (e.g. /v1/workflows, the workflow API):
  // a request whose path starts with `prefix` and matches no built-in route goes to `handler`
  // (on the I/O thread: it must not block) after the API-key check.
  struct ExtraRoute {
    std::string prefix;
    std::function<void(const HttpRequest&, std::shared_ptr<HttpResponder>)> handler;
  };
  std::vector<ExtraRoute> extra_routes;
};

struct GenerateRequest;
class WorkerPool;

class OpenAiServer final {
 public:
  // `engine` must outlive this object and every request it started.
  OpenAiServer(Engine* engine, OpenAiServerOptions options);
  ~OpenAiServer();
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  void Handle(HttpRequest request, std::shared_ptr<HttpResponder> responder);
  // Waits for the grammar compiles and the request work (tokenization) in flight: they use the
  // engine; call before destroying it. Work arriving after this runs on the calling thread.
  void StopCompiles();
  // While draining, /health answers 503 (load balancers stop sending).
  void SetDraining(bool draining) { draining_ = draining; }
  const std::string& model_name() const { return model_name_; }
  ServerMetrics& metrics() { return metrics_; }

  // For the pooling endpoints (pooling.cc).
  Engine* engine() const { return engine_; }
  const EmbeddingHead* embedding_head() const { return options_.embedding_head.get(); }
  int max_model_len() const { return generator_->max_model_len(); }
  const Generator& generator() const { return *generator_; }
  std::string NewId(const char* prefix);
  // 404 unless `model` is empty or the served name.
  std::optional<ApiError> CheckModel(const std::string& model) const;
  // A body's "model": absent or null is fine, a string is checked as above, another type is 400.
  std::optional<ApiError> CheckModelField(const nlohmann::ordered_json& body) const;
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
  // Renders / tokenizes every prompt, checks ids and lengths (Generator::Prepare).
  std::optional<ApiError> PreparePrompts(GenerateRequest* g, PreparedGeneration* out) const;
  void StartGeneration(std::shared_ptr<HttpResponder> responder, GenerateRequest g,
                       PreparedGeneration prepared);
  // Runs `fn` on the worker pool (or inline once StopCompiles() ran).
  void RunOffIoThread(std::function<void()> fn);

  Engine* engine_;
  OpenAiServerOptions options_;
  std::string model_name_;
  ServerMetrics metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> compiles_stopped_{false};
  std::unique_ptr<Generator> generator_;
  std::atomic<uint64_t> next_id_{0};
  uint64_t id_salt_ = 0;
  // Last: joined first, while the rest is alive.
  std::unique_ptr<WorkerPool> compile_pool_;
  std::unique_ptr<WorkerPool> tokenize_pool_;
};

}  // namespace kiln::server
