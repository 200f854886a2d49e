// `kiln serve`: the OpenAI-compatible HTTP server (src/server/) over one Engine.
//
//   kiln serve --model PATH [--tokenizer PATH] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
//       [--served-model-name NAME] [--max-model-len N] [--max-num-seqs N] [--device cpu|cuda]
//       [--load-format dummy] [--chat-template FILE|TEXT] [--max-body-bytes N]
//       [--embedding-head FILE.safetensors] ... (engine flags)
//
// Prints "kiln serve: listening on http://HOST:PORT" once ready (--port 0 picks a free port).
// SIGTERM / SIGINT: stop accepting, let in-flight requests finish for up to
// --shutdown-grace-period seconds (a second signal cuts it short), abort the rest, exit 0.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/logging.h"
#include "flags.h"
#include "kiln/engine.h"
#include "server/http_server.h"
#include "server/openai_server.h"
#include "subcommands.h"
#include "workflow/engine_llm.h"
#include "workflow/workflow_api.h"

namespace kiln::cli {
namespace {

// SIGTERM / SIGINT: counted, and the first one wakes the main thread through a pipe. A handler
// (rather than a blocked mask + sigwait) also covers threads that libraries started before main.
std::atomic<int> g_num_signals{0};
int g_signal_pipe[2] = {-1, -1};

void OnSignal(int) {
  if (g_num_signals.fetch_add(1) == 0) {
    const char c = 1;
    [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &c, 1);
  }
}

Status InstallSignalHandlers() {
  if (pipe(g_signal_pipe) != 0) return Status::IOError("pipe() failed");
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return Status::Ok();
}

// --chat-template takes a file path or the template text itself.
StatusOr<std::string> LoadChatTemplate(const std::string& value) {
  if (value.empty() || value.find("{%") != std::string::npos ||
      value.find("{{") != std::string::npos) {
    return value;
  }
  std::ifstream in(value, std::ios::binary);
  if (!in) return Status::InvalidArgument("--chat-template: cannot read file '" + value + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status Serve(int argc, char** argv) {
  Flags f;
  DeclareEngineFlags(&f);
  f.Value("host", "address to listen on (default 127.0.0.1)");
  f.Value("port", "port to listen on (default 8000; 0 = any free port)");
  f.Value("api-key", "require 'Authorization: Bearer KEY' on /v1/*, /tokenize, /detokenize");
  f.Value("chat-template", "chat template (Jinja) file or text; overrides the tokenizer's");
  f.Value("max-body-bytes", "largest request body accepted (default 64 MiB; larger → 413)");
  f.Value("http-threads", "io threads serving connections (default 2)");
  f.Value("compile-threads",
          "threads compiling structured-output grammars, off the io threads (default 2)");
  f.Value("tokenize-threads",
          "threads parsing, rendering chat templates and tokenizing request bodies, off the io "
          "threads (default 4)");
  f.Value("request-timeout", "seconds to receive one request's headers and body (default 60)");
  f.Value("keep-alive-timeout", "seconds an idle keep-alive connection stays open (default 65)");
  f.Value("shutdown-grace-period", "seconds in-flight requests may finish on SIGTERM (default 30)");
  f.Value("retry-after", "Retry-After seconds sent with 503 (default 1)");
  f.Value("embedding-head", "safetensors projection head for /v1/embeddings (+ .json description)");
  f.Value("workflow-db",
          "SQLite file of the /v1/workflows API: workflows, versions, runs "
          "(default :memory:, kept only while the server runs)");
  f.Value("workflow-threads", "workflow runs executing at once (default 8)");
  KILN_RETURN_IF_ERROR(f.Parse(argc, argv, 2));

  EngineOptions engine_options;
  KILN_RETURN_IF_ERROR(EngineOptionsFromFlags(f, &engine_options));
  server::HttpServerOptions http;
  http.host = f.GetString("host", http.host);
  KILN_ASSIGN_OR_RETURN(http.port, f.GetInt32("port", http.port));
  KILN_ASSIGN_OR_RETURN(http.max_body_bytes, f.GetInt("max-body-bytes", http.max_body_bytes));
  KILN_ASSIGN_OR_RETURN(http.num_threads, f.GetInt32("http-threads", http.num_threads));
  if (http.num_threads < 1 || http.num_threads > 1024) {
    return Status::InvalidArgument("--http-threads must be in [1, 1024]");
  }
  KILN_ASSIGN_OR_RETURN(http.read_timeout_s, f.GetDouble("request-timeout", http.read_timeout_s));
  KILN_ASSIGN_OR_RETURN(http.idle_timeout_s,
                        f.GetDouble("keep-alive-timeout", http.idle_timeout_s));
  KILN_RETURN_IF_ERROR(http.Validate());
  KILN_ASSIGN_OR_RETURN(double grace_s, f.GetDouble("shutdown-grace-period", 30.0));
  if (!(grace_s >= 0 && grace_s <= 86400)) {
    return Status::InvalidArgument("--shutdown-grace-period must be in [0, 86400] seconds");
  }
  server::OpenAiServerOptions api;
  api.api_key = f.GetString("api-key");
  api.served_model_name = f.GetString("served-model-name");
  KILN_ASSIGN_OR_RETURN(api.chat_template, LoadChatTemplate(f.GetString("chat-template")));
  KILN_ASSIGN_OR_RETURN(api.retry_after_s, f.GetInt32("retry-after", 1));
  if (api.retry_after_s < 0 || api.retry_after_s > 86400) {
    return Status::InvalidArgument("--retry-after must be in [0, 86400] seconds");
  }
  KILN_ASSIGN_OR_RETURN(int64_t compile_threads,
                        f.GetInt("compile-threads", api.num_compile_threads));
  if (compile_threads < 1 || compile_threads > 256) {
    return Status::InvalidArgument("--compile-threads must be in [1, 256]");
  }
  api.num_compile_threads = static_cast<int>(compile_threads);
  KILN_ASSIGN_OR_RETURN(int64_t tokenize_threads,
                        f.GetInt("tokenize-threads", api.num_tokenize_threads));
  if (tokenize_threads < 1 || tokenize_threads > 256) {
    return Status::InvalidArgument("--tokenize-threads must be in [1, 256]");
  }
  api.num_tokenize_threads = static_cast<int>(tokenize_threads);

  KILN_RETURN_IF_ERROR(InstallSignalHandlers());

  if (f.Has("embedding-head")) {
    KILN_ASSIGN_OR_RETURN(std::unique_ptr<server::EmbeddingHead> head,
                          server::EmbeddingHead::Load(f.GetString("embedding-head")));
    api.embedding_head = std::move(head);
  }
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(engine_options));
  if (api.embedding_head && api.embedding_head->input_size() != engine->model_info().hidden_size) {
    return Status::InvalidArgument("--embedding-head takes " +
                                   std::to_string(api.embedding_head->input_size()) +
                                   " inputs but the model's hidden size is " +
                                   std::to_string(engine->model_info().hidden_size));
  }
  // /v1/workflows and /v1/runs: created once the port is known (its llm nodes call this server).
  std::unique_ptr<workflow::WorkflowApi> workflows;
  for (const char* prefix : {"/v1/workflows", "/v1/runs/"}) {
    api.extra_routes.push_back({prefix, [&workflows](const server::HttpRequest& r,
                                                     std::shared_ptr<server::HttpResponder> w) {
                                  workflows->Handle(r, std::move(w));
                                }});
  }
  workflow::WorkflowApiOptions wf;
  wf.db_path = f.GetString("workflow-db", wf.db_path);
  KILN_ASSIGN_OR_RETURN(wf.num_run_threads, f.GetInt32("workflow-threads", wf.num_run_threads));
  if (wf.num_run_threads < 1 || wf.num_run_threads > 256) {
    return Status::InvalidArgument("--workflow-threads must be in [1, 256]");
  }
  auto openai = std::make_unique<server::OpenAiServer>(engine.get(), api);
  KILN_ASSIGN_OR_RETURN(
      std::unique_ptr<server::HttpServer> http_server,
      server::HttpServer::Create(
          http,
          [&openai](server::HttpRequest request, std::shared_ptr<server::HttpResponder> r) {
            openai->Handle(std::move(request), std::move(r));
          },
          // Replies the transport sends itself (malformed HTTP, 413, 501, ...) count too.
          [&openai](int status) { openai->metrics().ObserveHttpStatus(status); }));
  wf.services.llm_base_url = "http://" +
                             (http.host == "0.0.0.0" ? std::string("127.0.0.1") : http.host) + ":" +
                             std::to_string(http_server->port());
  wf.services.llm_api_key = api.api_key;
  wf.services.default_model = openai->model_name();
  // llm nodes without a base_url generate on this engine in-process (classify / embed nodes use
  // llm_base_url, this server over loopback).
  GeneratorOptions wf_gen;
  wf_gen.chat_template = api.chat_template;
  auto wf_generator = std::make_unique<Generator>(engine.get(), wf_gen);
  auto wf_llm = std::make_unique<workflow::GeneratorLlm>(wf_generator.get());
  wf.services.local_llm = wf_llm.get();
  KILN_ASSIGN_OR_RETURN(workflows, workflow::WorkflowApi::Create(wf));
  if (workflows->num_recovered_runs() > 0) {
    KILN_LOG(WARNING) << "workflows: " << workflows->num_recovered_runs()
                      << " run(s) interrupted by the last stop marked failed";
  }
  http_server->Start();
  std::printf("kiln serve: listening on http://%s:%d (model %s, device %s)\n", http.host.c_str(),
              http_server->port(), openai->model_name().c_str(),
              engine->model_info().device.c_str());
  std::fflush(stdout);

  char c;
  while (read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
  }
  KILN_LOG(INFO) << "signal: draining (grace period " << grace_s << " s)";
  openai->SetDraining(true);
  http_server->StopAccepting();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  while (http_server->num_pending_exchanges() > 0 && std::chrono::steady_clock::now() < deadline) {
    if (g_num_signals > 1) {
      KILN_LOG(WARNING) << "second signal: aborting in-flight requests";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  workflows->Shutdown();  // cancels runs still going (their records say so)
  engine->Shutdown(/*abort_running=*/true);
  openai->StopCompiles();  // grammar compiles and tokenization in flight use the engine
  // Let aborted requests' final events reach their clients.
  for (int i = 0; i < 40 && http_server->num_pending_exchanges() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  // The io threads go first: an output the engine posted to a connection's strand before it
  // stopped would otherwise run against the engine's tokenizer while the engine is destroyed.
  // With the io threads joined, dropping the engine's output callbacks (they hold connections)
  // closes those sockets on a stopped, still-alive io_context.
  http_server->Stop();
  engine.reset();
  openai.reset();
  workflows.reset();
  KILN_LOG(INFO) << "stopped";
  return Status::Ok();
}

}  // namespace
}  // namespace kiln::cli

int RunServe(int argc, char** argv) {
  const kiln::Status status = kiln::cli::Serve(argc, argv);
  if (!status.ok()) {
    std::fprintf(stderr, "kiln serve: %s\n", status.ToString().c_str());
    return status.code() == kiln::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
