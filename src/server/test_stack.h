// The server's integration-test stack (tests only): an Engine on stories260K (CPU backend) behind
// an OpenAiServer and an HttpServer on a loopback ephemeral port, plus the check every error reply
// must pass. Shared by openai_server_test.cc and openai_server_hardening_test.cc.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "server/openai_server.h"
#include "server/test_http_client.h"

namespace kiln::server::test_stack {

inline constexpr char kTemplate[] =
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}Assistant: {{ m['content'] }}{% if not loop.last %}\n"
    "{% endif %}{% else %}{{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}";

inline std::string SharedDir() {
  std::string shared;
  if (const char* s = std::getenv("KILN_SHARED")) {
    shared = s;
  } else if (const char* src = std::getenv("KILN_SOURCE_DIR")) {
    shared = std::string(src) + "/../shared";
  } else {
    shared = "../shared";
  }
  return shared;
}

inline std::string ModelPath() { return SharedDir() + "/models/stories260K/hf"; }

// One engine with an HTTP front; optionally an API key and engine limits.
struct Stack {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<OpenAiServer> api;
  std::unique_ptr<HttpServer> http;

  static std::unique_ptr<Stack> Start(const std::string& api_key, int max_num_seqs, int max_waiting,
                                      std::shared_ptr<const EmbeddingHead> head = nullptr,
                                      const std::string& model_path = ModelPath(),
                                      int num_io_threads = 2) {
    EngineOptions o;
    o.model.model_path = model_path;
    o.cache.kv_cache_memory_bytes = int64_t{64} << 20;
    o.scheduler.max_num_seqs = max_num_seqs;
    o.scheduler.max_waiting_requests = max_waiting;
    o.device.num_threads = 1;
    auto engine = Engine::Create(o);
    if (!engine.ok()) {
      ADD_FAILURE() << engine.status().ToString();
      return nullptr;
    }
    auto s = std::make_unique<Stack>();
    s->engine = std::move(engine).value();
    OpenAiServerOptions ao;
    ao.api_key = api_key;
    ao.chat_template = kTemplate;
    ao.served_model_name = "stories";
    ao.embedding_head = std::move(head);
    s->api = std::make_unique<OpenAiServer>(s->engine.get(), ao);
    HttpServerOptions ho;
    ho.port = 0;
    ho.max_body_bytes = 1 << 20;
    ho.num_threads = num_io_threads;
    OpenAiServer* api = s->api.get();
    auto http = HttpServer::Create(
        ho,
        [api](HttpRequest r, std::shared_ptr<HttpResponder> resp) {
          api->Handle(std::move(r), std::move(resp));
        },
        [api](int status) { api->metrics().ObserveHttpStatus(status); });
    if (!http.ok()) {
      ADD_FAILURE() << http.status().ToString();
      return nullptr;
    }
    s->http = std::move(http).value();
    s->http->Start();
    return s;
  }

  ~Stack() {
    if (engine) engine->Shutdown(/*abort_running=*/true);
    if (api) api->StopCompiles();
    // Same order as kiln serve: the io threads stop before the engine (and its tokenizer) goes,
    // since outputs posted to connection strands use both.
    if (http) http->Stop();
    engine.reset();
  }

  int port() const { return http->port(); }
};

inline void ExpectError(const test_client::HttpResult& r, int status, const std::string& needle,
                        const std::string& param = "") {
  EXPECT_EQ(r.status, status) << r.head << r.body;
  const nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.body;
  ASSERT_TRUE(j.contains("error")) << r.body;
  for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(j["error"].contains(k));
  EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos) << r.body;
  if (!param.empty()) EXPECT_EQ(j["error"]["param"], param) << r.body;
  // Nothing internal leaks: no source files or paths.
  EXPECT_EQ(r.body.find(".cc"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("/work"), std::string::npos) << r.body;
}

}  // namespace kiln::server::test_stack
