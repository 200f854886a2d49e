// Regression test (issue 18, "Stalls"): tokenization and chat-template rendering used to run on
// the HTTP I/O threads, so two large /tokenize bodies held /health for seconds. On a server with
// ONE I/O thread, /health must answer within 100 ms while large /tokenize (text and chat) and
// over-long chat requests are in flight, and those requests must still get correct answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "kiln/engine.h"
#include "server/http_server.h"
#include "server/openai_server.h"
#include "server/test_http_client.h"
#include "tests/test_util.h"

namespace kiln::server {
namespace {

using nlohmann::json;
using test_client::Fetch;
using test_client::HttpResult;

std::string ModelPath() { return kiln::testing::SharedDir() + "/models/stories260K/hf"; }

double MillisSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Words the stories260K tokenizer knows, so the text tokenizes like prose (many merges).
std::string Prose(size_t num_bytes) {
  static const char kWords[] = "Once upon a time there was a little girl named Lily who loved ";
  std::string s;
  s.reserve(num_bytes + sizeof(kWords));
  while (s.size() < num_bytes) s += kWords;
  return s;
}

TEST(IoThreadStallTest, HealthAnswersWithin100msWhileLargeRequestsTokenize) {
  if (!std::filesystem::exists(ModelPath() + "/config.json")) {
    GTEST_SKIP() << "missing " << ModelPath() << " (set KILN_SHARED)";
  }
  EngineOptions o;
  o.model.model_path = ModelPath();
  o.cache.kv_cache_memory_bytes = int64_t{64} << 20;
  o.device.num_threads = 1;
  auto engine = Engine::Create(o);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  OpenAiServerOptions ao;
  ao.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}";
  ao.num_tokenize_threads = 4;
  OpenAiServer api(engine->get(), ao);
  HttpServerOptions ho;
  ho.port = 0;
  ho.num_threads = 1;  // one I/O thread: any work on it stalls every connection
  ho.max_body_bytes = int64_t{64} << 20;
  auto http = HttpServer::Create(ho, [&api](HttpRequest r, std::shared_ptr<HttpResponder> resp) {
    api.Handle(std::move(r), std::move(resp));
  });
  ASSERT_TRUE(http.ok()) << http.status().ToString();
  (*http)->Start();
  const int port = (*http)->port();

  // Heavy requests: two large /tokenize texts, a large /tokenize chat, and an over-long chat
  // completion (refused for its length, after rendering).
  const std::string text = Prose(size_t{1} << 20);
  const std::string tokenize_body = json{{"prompt", text}}.dump();
  const json messages = json::array({{{"role", "user"}, {"content", text}}});
  const std::string chat_tokenize_body = json{{"messages", messages}}.dump();
  const std::string chat_body = json{{"messages", messages}, {"max_tokens", 4}}.dump();
  std::atomic<int> num_in_flight{4};
  std::vector<HttpResult> results(4);
  std::vector<double> heavy_ms(4);
  std::vector<std::thread> heavy;
  const std::pair<const char*, const std::string*> requests[] = {
      {"/tokenize", &tokenize_body},
      {"/tokenize", &tokenize_body},
      {"/tokenize", &chat_tokenize_body},
      {"/v1/chat/completions", &chat_body}};
  for (int i = 0; i < 4; ++i) {
    heavy.emplace_back([&, i] {
      const auto t0 = std::chrono::steady_clock::now();
      results[i] = Fetch(port, "POST", requests[i].first, *requests[i].second);
      heavy_ms[i] = MillisSince(t0);
      --num_in_flight;
    });
  }

  // Probe /health on fresh connections while they run.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::vector<double> probe_ms;
  while (num_in_flight > 0) {
    const auto t0 = std::chrono::steady_clock::now();
    const HttpResult h = Fetch(port, "GET", "/health");
    const double ms = MillisSince(t0);
    EXPECT_EQ(h.status, 200) << h.head;
    if (num_in_flight > 0) probe_ms.push_back(ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& t : heavy) t.join();

  // The heavy requests were answered, and correctly.
  const int64_t expected_count =
      static_cast<int64_t>(engine->get()->tokenizer()->Encode(text, true).size());
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(results[i].status, 200) << results[i].head;
    EXPECT_EQ(json::parse(results[i].body)["count"].get<int64_t>(), expected_count);
  }
  ASSERT_EQ(results[2].status, 200) << results[2].head;
  EXPECT_GT(json::parse(results[2].body)["count"].get<int64_t>(), expected_count / 2);
  EXPECT_EQ(results[3].status, 400) << results[3].body;
  EXPECT_NE(results[3].body.find("context_length_exceeded"), std::string::npos) << results[3].body;

  ASSERT_FALSE(probe_ms.empty());
  std::sort(probe_ms.begin(), probe_ms.end());
  const double p95 = probe_ms[probe_ms.size() * 95 / 100];
  const double worst = probe_ms.back();
  std::printf(
      "/health: %zu probes while large requests ran (longest %.0f ms): median %.1f ms, "
      "p95 %.1f ms, worst %.1f ms\n",
      probe_ms.size(), *std::max_element(heavy_ms.begin(), heavy_ms.end()),
      probe_ms[probe_ms.size() / 2], p95, worst);
  // Tokenizing on the I/O thread held each probe for as long as a request tokenized (seconds).
  // The bound is 100 ms; the worst probe may exceed it by an OS scheduling hiccup on a loaded
  // 2-core CI machine (ctest -j2), never by a stall.
  EXPECT_LT(p95, 100.0);
  EXPECT_LT(worst, 300.0);
  EXPECT_GE(probe_ms.size(), 10u) << "the large requests finished too fast to test anything";

  // An over-long embeddings input is refused by its size, without tokenizing it.
  const HttpResult embed = Fetch(port, "POST", "/v1/embeddings", json{{"input", text}}.dump());
  EXPECT_EQ(embed.status, 400) << embed.body;
  EXPECT_NE(embed.body.find("rejected without tokenizing"), std::string::npos) << embed.body;

  engine->get()->Shutdown(/*abort_running=*/true);
  api.StopCompiles();
  (*http)->Stop();
}

}  // namespace
}  // namespace kiln::server
