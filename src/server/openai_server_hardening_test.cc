// Regression tests of issue 18 (server hardening), one per reproduction, against the full stack
// (stories260K on the CPU backend behind OpenAiServer + HttpServer): deep JSON nesting, long
// Jinja chains, template amplification, wrong-type/null fields, echo scoring with max_tokens 0, a
// model without a tokenizer, `param` naming the real field, Bearer case, the per-request sequence
// cap, the prompt byte cap, tool_choice, transport replies in the metrics, half-closed clients and
// replies that must never be dropped. After every bad request /health must answer within 100 ms.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "server/openai_server.h"
#include "server/test_http_client.h"
#include "server/test_stack.h"

namespace kiln::server {
namespace {

using nlohmann::json;
using test_client::Client;
using test_client::Fetch;
using test_client::HttpResult;
using test_client::ReadHttpResult;
using test_stack::ExpectError;
using test_stack::ModelPath;
using test_stack::SharedDir;
using test_stack::Stack;

int64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

class HardeningTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(ModelPath() + "/config.json")) return;
    stack_ = Stack::Start("", 64, 100000).release();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  void SetUp() override {
    if (stack_ == nullptr) GTEST_SKIP() << "missing " << ModelPath() << " (set KILN_SHARED)";
  }
  // Posts raw text; then checks that /health still answers 200 within 100 ms.
  static HttpResult PostRaw(const std::string& path, const std::string& body) {
    HttpResult r = Fetch(stack_->port(), "POST", path, body);
    ExpectHealthy();
    return r;
  }
  static HttpResult Post(const std::string& path, const json& body) {
    return PostRaw(path, body.dump());
  }
  static void ExpectHealthy() {
    const auto t0 = std::chrono::steady_clock::now();
    const HttpResult h = Fetch(stack_->port(), "GET", "/health");
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(h.status, 200);
    EXPECT_LT(ms, 100.0) << "/health took " << ms << " ms";
  }
  static json Messages() { return json::array({{{"role", "user"}, {"content", "Hi"}}}); }

  static Stack* stack_;
};

Stack* HardeningTest::stack_ = nullptr;

std::string Nested(int n) { return std::string(n, '[') + std::string(n, ']'); }

TEST_F(HardeningTest, DeepJsonNestingIs400OnEveryRouteAndField) {
  const std::string deep = Nested(100000);
  const std::string msgs = Messages().dump();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/v1/embeddings", "{\"input\":" + deep + "}"},
      {"/v1/classify", "{\"labels\":[\"a\",\"b\"],\"input\":" + deep + "}"},
      {"/tokenize", "{\"prompt\":\"x\",\"extra\":" + deep + "}"},
      {"/v1/chat/completions", "{\"messages\":[" + deep + "]}"},
      {"/v1/chat/completions", "{\"messages\":" + msgs + ",\"tools\":" + deep + "}"},
      {"/v1/chat/completions",
       "{\"messages\":" + msgs + ",\"chat_template_kwargs\":{\"x\":" + deep + "}}"},
      {"/v1/chat/completions",
       "{\"messages\":" + msgs +
           ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"s\","
           "\"schema\":{\"x\":" +
           deep + "}}}}"},
      {"/v1/completions", "{\"prompt\":\"x\",\"guided_json\":" + deep + "}"},
  };
  for (const auto& [path, body] : cases) {
    ExpectError(PostRaw(path, body), 400, "levels deep");
  }
  // Inside a string (guided_json given as text) the same bound holds, naming the field.
  ExpectError(Post("/v1/completions", {{"prompt", "x"}, {"guided_json", Nested(5000)}}), 400,
              "levels deep", "guided_json");
  // Brackets inside strings do not count, and nesting under the bound is served.
  const HttpResult ok =
      Post("/v1/chat/completions", {{"messages", Messages()},
                                    {"max_tokens", 2},
                                    {"user", std::string(1000, '[')},
                                    {"chat_template_kwargs", {{"x", json::parse(Nested(100))}}}});
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(HardeningTest, LongJinjaChainsAre400NotACrash) {
  auto repeat = [](const std::string& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  const std::vector<std::string> templates = {
      "{{ 1" + repeat("+1", 12000) + " }}",     "{{ 'a'" + repeat("|trim", 20000) + " }}",
      "{{ 'a'" + repeat("~'a'", 50000) + " }}", "{{ true" + repeat(" and true", 50000) + " }}",
      "{{ [0]" + repeat("[0]", 50000) + " }}",  "{{ x" + repeat(".y", 50000) + " }}",
      "{{ f" + repeat("()", 50000) + " }}",
  };
  for (const auto& t : templates) {
    ExpectError(Post("/v1/chat/completions", {{"messages", Messages()}, {"chat_template", t}}), 400,
                "nested too deeply", "chat_template");
  }
  // A chain of ordinary length renders.
  const HttpResult ok = Post("/tokenize", {{"messages", Messages()},
                                           {"chat_template", "{{ 1" + repeat("+1", 150) + " }}"}});
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(HardeningTest, TemplateAmplificationIsRefusedWhileRendering) {
  const int64_t rss0 = RssBytes();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{{ 'x' * 250000000 }}", "output too large"},
      {"{% set l = [] %}{% for i in range(100000) %}{% do l.append('x' * 60000) %}{% endfor %}"
       "{{ l | length }}",
       "too much data"},
      {"{{ ([1] * 60000000) | length }}", "output too large"},
      {"{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ 'xxxxxxxx' "
       "%}{% endfor %}{{ ns.s | length }}",
       "too"},
  };
  for (const auto& [tmpl, needle] : cases) {
    for (int i = 0; i < 2; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      ExpectError(Post("/v1/chat/completions", {{"messages", Messages()}, {"chat_template", tmpl}}),
                  400, needle, "chat_template");
      EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2)) << tmpl;
    }
  }
  EXPECT_LT(RssBytes() - rss0, int64_t{64} << 20) << "RSS grew by " << (RssBytes() - rss0);
}

TEST_F(HardeningTest, WrongTypedOptionalFieldsAre400AndNullIsAbsent) {
  ExpectError(Post("/tokenize", {{"prompt", "x"}, {"return_token_strs", "yes"}}), 400,
              "must be a boolean", "return_token_strs");
  EXPECT_EQ(Post("/tokenize", {{"prompt", "x"}, {"return_token_strs", nullptr}}).status, 200);
  ExpectError(Post("/v1/embeddings", {{"input", "x"}, {"encoding_format", 5}}), 400,
              "must be a string", "encoding_format");
  ExpectError(Post("/v1/embeddings", {{"input", "x"}, {"pooling", json::array()}}), 400,
              "must be a string", "pooling");
  EXPECT_EQ(
      Post("/v1/embeddings", {{"input", "x"}, {"encoding_format", nullptr}, {"pooling", nullptr}})
          .status,
      200);
  // Regressions (API audit, session 6): a non-string model passed unchecked on the pooling and
  // tokenize routes, and embeddings accepted truncate_prompt_tokens and ignored it.
  for (const char* path : {"/v1/embeddings", "/v1/classify", "/tokenize"}) {
    ExpectError(Post(path, {{"input", "x"}, {"prompt", "x"}, {"model", 5}}), 400,
                "'model' must be a string", "model");
  }
  ExpectError(Post("/v1/embeddings", {{"input", "x"}, {"truncate_prompt_tokens", 3}}), 400,
              "not supported", "truncate_prompt_tokens");
  EXPECT_EQ(Post("/v1/embeddings", {{"input", "x"}, {"model", nullptr}}).status, 200);
}

TEST_F(HardeningTest, EchoWithMaxTokensZeroReturnsThePrompt) {
  const std::string prompt = "Once upon a time";
  const HttpResult r =
      Post("/v1/completions", {{"prompt", prompt}, {"echo", true}, {"max_tokens", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["text"], prompt);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(j["usage"]["completion_tokens"], 0);
  // Without echo, max_tokens 0 stays an error.
  ExpectError(Post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 0}}), 400, "at least 1",
              "max_tokens");
}

TEST_F(HardeningTest, ModelWithoutTokenizerAnswersChat400) {
  const std::string dir = SharedDir() + "/models/tiny-qwen2";
  if (!std::filesystem::exists(dir + "/config.json")) GTEST_SKIP() << "missing " << dir;
  auto qwen = Stack::Start("", 4, 100, nullptr, dir);
  ASSERT_NE(qwen, nullptr);
  const HttpResult r =
      Fetch(qwen->port(), "POST", "/v1/chat/completions", json{{"messages", Messages()}}.dump());
  ExpectError(r, 400, "no tokenizer", "messages");
  EXPECT_EQ(r.head.find("Retry-After"), std::string::npos) << r.head;
  ExpectError(Fetch(qwen->port(), "POST", "/tokenize", json{{"prompt", "x"}}.dump()), 400,
              "no tokenizer");
}

TEST_F(HardeningTest, ErrorsNameTheRealField) {
  ExpectError(Post("/v1/completions", {{"prompt", "x"}, {"top_p", 1e-50}}), 400, "top_p", "top_p");
  ExpectError(Post("/v1/completions", {{"prompt", "x"}, {"repetition_penalty", 1e-50}}), 400,
              "repetition_penalty", "repetition_penalty");
  ExpectError(Post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 2}, {"min_tokens", 5}}), 400,
              "min_tokens", "min_tokens");
  ExpectError(Post("/v1/completions", {{"prompt", "x"}, {"guided_regex", "(a"}}), 400, "",
              "guided_regex");
  ExpectError(Post("/v1/chat/completions",
                   {{"messages", Messages()},
                    {"response_format",
                     {{"type", "json_schema"},
                      {"json_schema", {{"name", "s"}, {"schema", {{"type", 5}}}}}}}}),
              400, "", "response_format");
}

TEST_F(HardeningTest, BearerSchemeIsCaseInsensitive) {
  auto keyed = Stack::Start("sekrit", 4, 100);
  ASSERT_NE(keyed, nullptr);
  for (const char* auth : {"Bearer sekrit", "bearer sekrit", "BEARER  sekrit"}) {
    const HttpResult r = Fetch(keyed->port(), "GET", "/v1/models", "",
                               std::string("Authorization: ") + auth + "\r\n");
    EXPECT_EQ(r.status, 200) << auth << ": " << r.body;
  }
  ExpectError(Fetch(keyed->port(), "GET", "/v1/models", "", "Authorization: Bearers sekrit\r\n"),
              401, "invalid API key");
}

TEST_F(HardeningTest, SequencesPerRequestAreCapped) {
  const json prompts = json(std::vector<std::string>(700, "Once"));
  ExpectError(Post("/v1/completions", {{"prompt", prompts}, {"n", 128}, {"max_tokens", 1}}), 400,
              "at most 1024", "n");
  ExpectError(Post("/v1/embeddings", {{"input", json(std::vector<std::string>(1025, "a"))}}), 400,
              "at most 1024", "input");
}

TEST_F(HardeningTest, OverlongPromptIsRejectedByBytesBeforeTokenizing) {
  const std::string big(900 << 10, 'a');  // far more than 512 tokens can hold
  ExpectError(Post("/v1/completions", {{"prompt", big}, {"max_tokens", 1}}), 400,
              "rejected without tokenizing", "prompt");
  ExpectError(Post("/v1/embeddings", {{"input", big}}), 400, "rejected without tokenizing",
              "input");
}

TEST_F(HardeningTest, ToolChoiceThatNeedsToolCallParsingIsRejected) {
  const json tools = json::array(
      {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", json::object()}}}}});
  ExpectError(Post("/v1/chat/completions",
                   {{"messages", Messages()}, {"tools", tools}, {"tool_choice", "required"}}),
              400, "not supported", "tool_choice");
  ExpectError(
      Post("/v1/chat/completions", {{"messages", Messages()},
                                    {"tools", tools},
                                    {"tool_choice", {{"type", "function"}, {"name", "f"}}}}),
      400, "not supported", "tool_choice");
  ExpectError(Post("/v1/chat/completions", {{"messages", Messages()}, {"parallel_tool_calls", 1}}),
              400, "must be a boolean", "parallel_tool_calls");
  const HttpResult ok = Post("/v1/chat/completions", {{"messages", Messages()},
                                                      {"tools", tools},
                                                      {"tool_choice", "auto"},
                                                      {"parallel_tool_calls", false},
                                                      {"max_tokens", 2}});
  EXPECT_EQ(ok.status, 200) << ok.body;
}

int64_t CountOfStatus(int port, int status) {
  const HttpResult m = Fetch(port, "GET", "/metrics");
  const std::string key = "kiln_http_requests_total{code=\"" + std::to_string(status) + "\"} ";
  const size_t pos = m.body.find(key);
  return pos == std::string::npos ? 0 : std::stoll(m.body.substr(pos + key.size()));
}

TEST_F(HardeningTest, TransportRepliesAreCountedInMetrics) {
  const int port = stack_->port();
  const int64_t n501 = CountOfStatus(port, 501), n400 = CountOfStatus(port, 400);
  {
    Client c(port);
    c.Send("POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxxxx");
    EXPECT_EQ(ReadHttpResult(c).status, 501);
  }
  {
    Client c(port);
    c.Send("NOT HTTP AT ALL\r\n\r\n");
    EXPECT_EQ(ReadHttpResult(c).status, 400);
  }
  EXPECT_EQ(CountOfStatus(port, 501), n501 + 1);
  EXPECT_EQ(CountOfStatus(port, 400), n400 + 1);
}

// Regression (issue 18): HEAD got a 405 with a body, which broke keep-alive framing. HEAD of a GET
// route is that GET without its body; of a POST route a 405 without a body.
TEST_F(HardeningTest, HeadIsGetWithoutABody) {
  Client c(stack_->port());
  c.Send("HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string head = c.ReadUntil("\r\n\r\n");
  EXPECT_NE(head.find("200 OK"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length: 0"), std::string::npos) << head;  // the GET's length
  c.Send("HEAD /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string head405 = c.ReadUntil("\r\n\r\n");
  EXPECT_NE(head405.find("405"), std::string::npos) << head405;
  c.Send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");  // the framing held
  const HttpResult r = ReadHttpResult(c);
  EXPECT_EQ(r.status, 200) << r.head << r.body;
  EXPECT_EQ(r.body, "{}");
}

TEST_F(HardeningTest, HalfClosedClientStillGetsItsCompletion) {
  for (bool stream : {false, true}) {
    Client c(stack_->port());
    const std::string body =
        json{{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"stream", stream}}.dump();
    c.Send("POST /v1/completions HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body);
    c.ShutdownWrite();
    const HttpResult r = ReadHttpResult(c);
    ASSERT_EQ(r.status, 200) << r.head << r.body;
    EXPECT_NE(r.body.find(stream ? "[DONE]" : "\"finish_reason\""), std::string::npos) << r.body;
    EXPECT_TRUE(c.PeerClosed());
  }
}

// Mixed requests (plain, streamed, structured, embeddings) from several threads, one per
// connection and several per keep-alive connection: every reply arrives complete.
TEST_F(HardeningTest, MixedConcurrentRequestsAreNeverDropped) {
  const std::vector<std::pair<std::string, json>> kinds = {
      {"/v1/completions", {{"prompt", "Once"}, {"max_tokens", 4}}},
      {"/v1/completions", {{"prompt", "Once"}, {"max_tokens", 4}, {"stream", true}}},
      {"/v1/chat/completions",
       {{"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})},
        {"max_tokens", 6},
        {"guided_choice", {"yes", "no"}}}},
      {"/v1/embeddings", {{"input", "Once upon a time"}}},
  };
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> threads;
  constexpr int kThreads = 8, kPerThread = 30;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::unique_ptr<Client> keep;
      for (int i = 0; i < kPerThread; ++i) {
        const auto& [path, body] = kinds[(t + i) % kinds.size()];
        const std::string text = body.dump();
        const bool keep_alive = t % 2 == 0;
        if (!keep_alive || keep == nullptr) keep = std::make_unique<Client>(stack_->port());
        keep->Send("POST " + path + " HTTP/1.1\r\nHost: x\r\n" +
                   (keep_alive ? "" : "Connection: close\r\n") +
                   "Content-Length: " + std::to_string(text.size()) + "\r\n\r\n");
        keep->Send(text);  // a second segment, as http.client sends bodies
        const HttpResult r = ReadHttpResult(*keep);
        const bool complete = r.status == 200 && (r.head.find("chunked") == std::string::npos ||
                                                  r.body.find("[DONE]") != std::string::npos);
        (complete ? ok : bad)++;
        if (!complete) ADD_FAILURE() << path << ": " << r.head << r.body;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, kThreads * kPerThread);
  EXPECT_EQ(bad, 0);
}

}  // namespace
}  // namespace kiln::server
