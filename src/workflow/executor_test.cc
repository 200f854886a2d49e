// The executor against a loopback fake model / HTTP service: branches, parallel branches, prefill,
// retries, fallbacks (models, default, fail branch), timeouts, step limits, cancellation, events;
// and the workflow API (WorkflowApi) behind a loopback HTTP server: request validation.
#include "workflow/executor.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <tuple>

#include "server/test_http_client.h"
#include "workflow/fake_service.h"
#include "workflow/spec.h"
#include "workflow/workflow.h"
#include "workflow/workflow_api.h"

namespace kiln::workflow {
namespace {

class ExecutorTest : public ::testing::Test {
 protected:
  std::shared_ptr<const Workflow> Compile(const std::string& yaml) {
    auto spec = ParseSpec(yaml);
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    if (!spec.ok()) return nullptr;
    auto w = Workflow::Compile(std::move(*spec));
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return w.ok() ? *w : nullptr;
  }
  RunResult RunIt(const std::string& yaml, Json inputs = Json::object(),
                  std::vector<WorkflowEvent>* events = nullptr) {
    auto w = Compile(yaml);
    if (w == nullptr) return {};
    RunOptions o;
    o.inputs = std::move(inputs);
    std::mutex mu;
    if (events != nullptr) {
      o.on_event = [&](const WorkflowEvent& e) {
        std::lock_guard<std::mutex> l(mu);
        events->push_back(e);
      };
    }
    return Executor(&services_).Run(*w, std::move(o));
  }
  static const NodeRecord* Find(const RunResult& r, const std::string& id) {
    for (const auto& n : r.nodes) {
      if (n.node_id == id) return &n;
    }
    return nullptr;
  }

  testing::FakeService fake_;
  Services services_{ServicesOptions{}};
};

TEST_F(ExecutorTest, ConditionTakesOneBranchAndSkipsTheOther) {
  const std::string yaml = R"(
inputs: {n: {type: integer, required: true}}
nodes:
  - {id: start, type: start}
  - {id: route, type: condition, cases: [{id: big, when: "inputs.n > 10"}, {id: mid, when: "inputs.n > 5"}]}
  - {id: big, type: end, outputs: {size: big}}
  - {id: mid, type: end, outputs: {size: mid}}
  - {id: small, type: end, outputs: {size: "small {{ inputs.n }}"}}
edges:
  - {from: start, to: route}
  - {from: route, to: big, branch: big}
  - {from: route, to: mid, branch: mid}
  - {from: route, to: small, branch: else}
)";
  RunResult r = RunIt(yaml, {{"n", 11}});
  EXPECT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.outputs, (Json{{"size", "big"}}));
  EXPECT_EQ(Find(r, "mid")->status, "skipped");
  EXPECT_EQ(Find(r, "small")->status, "skipped");
  EXPECT_EQ(RunIt(yaml, {{"n", 7}}).outputs["size"], "mid");
  EXPECT_EQ(RunIt(yaml, {{"n", 1}}).outputs["size"], "small 1");
  RunResult bad = RunIt(yaml, {{"n", "seven"}});
  EXPECT_EQ(bad.status, "failed");
  EXPECT_NE(bad.error.find("input 'n'"), std::string::npos) << bad.error;
  EXPECT_EQ(RunIt(yaml, Json::object()).status, "failed");  // required input missing
}

TEST_F(ExecutorTest, ParallelBranchesRunConcurrentlyAndJoin) {
  const std::string yaml = R"(
nodes:
  - {id: start, type: start}
  - {id: fan, type: parallel}
  - {id: a, type: http, url: ")" +
                           fake_.url() + R"(/sleep?ms=400"}
  - {id: b, type: http, url: ")" +
                           fake_.url() + R"(/sleep?ms=400"}
  - {id: c, type: http, url: ")" +
                           fake_.url() + R"(/sleep?ms=400"}
  - {id: both, type: join}
  - {id: out, type: end, outputs: {a: "{{ nodes.a.json.ok }}", n: "{{ nodes.both.branches | length }}"}}
edges:
  - {from: start, to: fan}
  - {from: fan, to: a}
  - {from: fan, to: b}
  - {from: fan, to: c}
  - {from: a, to: both}
  - {from: b, to: both}
  - {from: c, to: both}
  - {from: both, to: out}
)";
  RunResult r = RunIt(yaml);
  ASSERT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.outputs["a"], true);
  EXPECT_EQ(r.outputs["n"], 3);
  EXPECT_LT(r.duration_ms, 1000);  // three 400 ms calls overlapped (in sequence: 1200 ms)
  EXPECT_GE(r.duration_ms, 399);
}

TEST_F(ExecutorTest, PrefillStartsTheReplyAndStreams) {
  const std::string yaml = R"(
inputs: {msg: string}
nodes:
  - {id: start, type: start}
  - id: chat
    type: llm
    base_url: ")" + fake_.url() +
                           R"(/ok"
    model: m
    system: "You are Mia."
    history: "{{ inputs.history }}"
    messages: [{role: user, content: "{{ inputs.msg }}"}]
    prefill: "Once upon a time"
    sampling: {temperature: 0, max_tokens: 16}
  - {id: out, type: answer, answer: "{{ nodes.chat.text }}"}
)";
  auto spec = ParseSpec(yaml);
  ASSERT_FALSE(spec.ok() && Workflow::Compile(*spec).ok() && false);
  // history is not declared: declare it.
  const std::string y2 =
      std::string(yaml).replace(yaml.find("inputs: {msg: string}"), 21,
                                "inputs: {msg: string, history: {type: array, default: []}}");
  std::vector<WorkflowEvent> events;
  RunResult r = RunIt(
      y2,
      {{"msg", "Tell me a story"},
       {"history",
        {{{"role", "user"}, {"content", "hi"}}, {{"role", "assistant"}, {"content", "hello"}}}}},
      &events);
  ASSERT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.outputs["answer"], "Once upon a time and they lived happily.");
  const Json req = fake_.last_chat();
  ASSERT_EQ(req["messages"].size(), 5u);
  EXPECT_EQ(req["messages"][0]["role"], "system");
  EXPECT_EQ(req["messages"][1]["content"], "hi");
  EXPECT_EQ(req["messages"][3]["content"], "Tell me a story");
  EXPECT_EQ(req["messages"][4], (Json{{"role", "assistant"}, {"content", "Once upon a time"}}));
  EXPECT_EQ(req["continue_final_message"], true);
  EXPECT_EQ(req["add_generation_prompt"], false);
  EXPECT_EQ(req["max_tokens"], 16);
  EXPECT_EQ(r.num_tokens, 12);
  std::string streamed;
  std::vector<std::string> types;
  for (const auto& e : events) {
    types.push_back(e.type);
    if (e.type == "text_chunk" && e.data["node_id"] == "chat")
      streamed += e.data["text"].get<std::string>();
  }
  EXPECT_EQ(streamed, "Once upon a time and they lived happily.");
  ASSERT_FALSE(types.empty());
  EXPECT_EQ(types.front(), "workflow_started");
  EXPECT_EQ(types.back(), "workflow_finished");
  EXPECT_EQ(std::count(types.begin(), types.end(), "node_started"), 3);
  EXPECT_EQ(std::count(types.begin(), types.end(), "node_finished"), 3);
}

TEST_F(ExecutorTest, Http500AndTimeoutRetryThenFallBackWithThePathRecorded) {
  const std::string yaml = R"(
nodes:
  - {id: start, type: start}
  - id: flaky
    type: llm
    base_url: ")" + fake_.url() +
                           R"(/fail500"
    model: big
    prompt: hi
    stream: false
    retry: {max_attempts: 3, backoff_s: 0.01, jitter: 0.5}
    fallback: {models: [{model: slowpoke, base_url: ")" +
                           fake_.url() + R"(/slow"}, {model: small, base_url: ")" + fake_.url() +
                           R"(/ok"}]}
    timeout_s: 0.3
  - {id: out, type: end, outputs: {text: "{{ nodes.flaky.text }}", model: "{{ nodes.flaky.model }}"}}
)";
  RunResult r = RunIt(yaml);
  ASSERT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.outputs["model"], "small");
  const NodeRecord* n = Find(r, "flaky");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->path, "fallback:small");
  ASSERT_EQ(n->attempts.size(), 7u);  // 3 × HTTP 500, 3 × timeout, 1 success
  EXPECT_NE(n->attempts[0].error.find("HTTP 500"), std::string::npos) << n->attempts[0].error;
  EXPECT_EQ(n->attempts[3].variant, "fallback:slowpoke");
  EXPECT_NE(n->attempts[3].error.find("timed out"), std::string::npos) << n->attempts[3].error;
  EXPECT_LT(n->attempts[3].duration_ms, 1000);
  EXPECT_TRUE(n->attempts[6].error.empty());
  EXPECT_EQ(fake_.hits("/fail500/v1/chat/completions"), 3);
  EXPECT_EQ(r.num_fallbacks, 1);
}

TEST_F(ExecutorTest, DefaultAndFailBranchFallbacks) {
  const std::string yaml = R"(
nodes:
  - {id: start, type: start}
  - id: lookup
    type: http
    url: ")" + fake_.url() +
                           R"(/fail500/x"
    fallback: {default: {json: {tier: basic}}}
  - id: notify
    type: http
    url: ")" + fake_.url() +
                           R"(/fail500/y"
    fallback: {branch: true}
  - {id: sorry, type: template, template: "failed: {{ 'HTTP 500' in nodes.notify.error }}"}
  - {id: fine, type: template, template: "ok"}
  - {id: out, type: end, outputs: {tier: "{{ nodes.lookup.json.tier }}", note: "{{ nodes.sorry.text }}"}}
edges:
  - {from: start, to: lookup}
  - {from: lookup, to: notify}
  - {from: notify, to: sorry, branch: fail}
  - {from: notify, to: fine}
  - {from: sorry, to: out}
  - {from: fine, to: out}
)";
  RunResult r = RunIt(yaml);
  ASSERT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.outputs["tier"], "basic");
  EXPECT_EQ(r.outputs["note"], "failed: True");
  EXPECT_EQ(Find(r, "lookup")->path, "default");
  EXPECT_EQ(Find(r, "notify")->path, "fail_branch");
  EXPECT_EQ(Find(r, "fine")->status, "skipped");
  EXPECT_EQ(r.num_fallbacks, 2);
}

TEST_F(ExecutorTest, UnhandledFailureFailsTheRun) {
  RunResult r = RunIt(R"(
nodes:
  - {id: start, type: start}
  - {id: call, type: http, url: ")" +
                      fake_.url() + R"(/fail500/z", retry: {max_attempts: 2, backoff_s: 0}}
  - {id: out, type: end}
)");
  EXPECT_EQ(r.status, "failed");
  EXPECT_NE(r.error.find("node 'call'"), std::string::npos) << r.error;
  EXPECT_EQ(Find(r, "call")->attempts.size(), 2u);
  EXPECT_EQ(Find(r, "out"), nullptr);
}

TEST_F(ExecutorTest, RunTimeoutCancelsRunningNodes) {
  auto w = Compile(R"(
limits: {timeout_s: 0.3}
nodes:
  - {id: start, type: start}
  - {id: wait, type: http, url: ")" +
                   fake_.url() + R"(/sleep?ms=5000"}
  - {id: out, type: end}
)");
  const auto t0 = std::chrono::steady_clock::now();
  RunResult r = Executor(&services_).Run(*w, {});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, "failed");
  EXPECT_LT(s, 1.5);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
}

TEST_F(ExecutorTest, ExternalCancellation) {
  auto w = Compile(R"(
nodes:
  - {id: start, type: start}
  - {id: wait, type: http, url: ")" +
                   fake_.url() + R"(/sleep?ms=5000"}
  - {id: out, type: end}
)");
  std::atomic<bool> cancel{false};
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  RunOptions o;
  o.cancel = &cancel;
  RunResult r = Executor(&services_).Run(*w, std::move(o));
  t.join();
  EXPECT_EQ(r.status, "cancelled");
  EXPECT_LT(r.duration_ms, 1500);
}

TEST_F(ExecutorTest, StepLimit) {
  RunResult r = RunIt(R"(
limits: {max_steps: 2}
nodes:
  - {id: start, type: start}
  - {id: a, type: template, template: a}
  - {id: b, type: template, template: b}
  - {id: out, type: end}
)");
  EXPECT_EQ(r.status, "failed");
  EXPECT_NE(r.error.find("step limit"), std::string::npos) << r.error;
}

// Regression: the run's deadline was checked only while waiting for parallel nodes, so a lone
// node past it retried, then took its fallback.default, and the run "succeeded".
TEST_F(ExecutorTest, RunTimeoutIsNotCaughtByAFallback) {
  RunResult r = RunIt(R"(
limits: {timeout_s: 0.5}
nodes:
  - {id: start, type: start}
  - id: fetch
    type: http
    url: ")" + fake_.url() +
                      R"(/sleep?ms=3000"
    retry: {max_attempts: 3, backoff_s: 0.1}
    fallback: {default: {body: cached}}
  - {id: done, type: end, outputs: {r: "{{ nodes.fetch.body }}"}}
)");
  EXPECT_EQ(r.status, "failed");
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
  EXPECT_LT(r.duration_ms, 2000);
  const NodeRecord* fetch = Find(r, "fetch");
  ASSERT_NE(fetch, nullptr);
  EXPECT_EQ(fetch->status, "failed");
  EXPECT_NE(fetch->path, "default");
  EXPECT_EQ(fetch->attempts.size(), 1u);  // no retry starts past the deadline
  EXPECT_EQ(Find(r, "done"), nullptr);
  EXPECT_EQ(r.num_fallbacks, 0);
}

// Regression: limits.max_steps counted node starts, not attempts (the documented meaning), so
// ten retries passed a limit of 3 and the default made the run succeed.
TEST_F(ExecutorTest, StepLimitCountsRetries) {
  RunResult r = RunIt(R"(
limits: {max_steps: 3}
nodes:
  - {id: start, type: start}
  - id: f
    type: http
    url: ")" + fake_.url() +
                      R"(/fail500/steps"
    retry: {max_attempts: 10, backoff_s: 0}
    fallback: {default: {body: x}}
  - {id: done, type: end}
)");
  EXPECT_EQ(r.status, "failed");
  EXPECT_NE(r.error.find("step limit (3)"), std::string::npos) << r.error;
  EXPECT_EQ(fake_.hits("/fail500/steps"), 2);  // start + 2 attempts = 3 steps
  EXPECT_EQ(r.num_steps, 3);
  EXPECT_EQ(Find(r, "done"), nullptr);
}

// Regression: a prefill that rendered empty added no assistant message, but the reply was
// prefixed with the last message anyway (the user's prompt was streamed as the reply's start).
TEST_F(ExecutorTest, EmptyPrefillIsNotTheStartOfTheReply) {
  for (const char* stream : {"true", "false"}) {
    std::vector<WorkflowEvent> events;
    RunResult r = RunIt(R"(
inputs: {q: {type: string, default: "What is the secret?"}, prefix: {type: string, default: ""}}
nodes:
  - {id: start, type: start}
  - id: reply
    type: llm
    base_url: ")" + fake_.url() +
                            R"(/ok"
    system: "SYSTEM SECRET"
    prompt: "{{ inputs.q }}"
    prefill: "{{ inputs.prefix }}"
    stream: )" + stream + R"(
  - {id: done, type: end, outputs: {text: "{{ nodes.reply.text }}", prefill: "{{ nodes.reply.prefill }}"}}
)",
                        Json::object(), &events);
    ASSERT_EQ(r.status, "succeeded") << r.error;
    EXPECT_EQ(r.outputs["text"], fake_.reply) << "stream: " << stream;
    EXPECT_EQ(r.outputs["prefill"], "");
    std::string streamed;
    for (const auto& e : events) {
      if (e.type == "text_chunk") streamed += e.data["text"].get<std::string>();
    }
    EXPECT_EQ(streamed, fake_.reply) << "stream: " << stream;
    const Json req = fake_.last_chat();
    EXPECT_EQ(req["messages"].back()["role"], "user");
    EXPECT_FALSE(req.contains("continue_final_message"));
  }
}

// Regression: an llm node whose history rendered to [] (and no prompt) sent no messages and
// crashed on messages.back(); it is a node error.
TEST_F(ExecutorTest, LlmNodeWithNoMessagesFails) {
  RunResult r =
      RunIt(R"(
inputs: {h: {type: array, default: []}, prefix: {type: string, default: ""}}
nodes:
  - {id: start, type: start}
  - {id: reply, type: llm, base_url: ")" +
            fake_.url() +
            R"(/ok", history: "{{ inputs.h }}", prefill: "{{ inputs.prefix }}", stream: false}
  - {id: done, type: end, outputs: {text: "{{ nodes.reply.text }}"}}
)");
  EXPECT_EQ(r.status, "failed");
  EXPECT_NE(r.error.find("node 'reply' failed"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("no messages"), std::string::npos) << r.error;
  EXPECT_EQ(fake_.hits("/ok/v1/chat/completions"), 0);
}

// Regression: a misspelt field in a text template rendered "" and the run succeeded.
TEST_F(ExecutorTest, PrintingAnUndefinedValueFailsTheNode) {
  RunResult r = RunIt(R"(
nodes:
  - {id: start, type: start}
  - {id: t, type: template, template: "hello"}
  - {id: a, type: answer, answer: "got {{ nodes.t.txt }}"}
)");
  EXPECT_EQ(r.status, "failed");
  EXPECT_NE(r.error.find("node 'a' failed"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("{{ nodes.t.txt }}"), std::string::npos) << r.error;
}

// Regression: a tts node whose text rendered empty produced a silent WAV.
TEST_F(ExecutorTest, TtsWithEmptyTextIsANodeError) {
  RunResult r = RunIt(R"(
inputs: {t: {type: string, default: ""}}
nodes:
  - {id: start, type: start}
  - {id: say, type: tts, text: "{{ inputs.t }}"}
  - {id: done, type: end, outputs: {n: "{{ nodes.say.num_samples }}"}}
)");
  EXPECT_EQ(r.status, "failed");
  EXPECT_NE(r.error.find("node 'say' failed"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("empty"), std::string::npos) << r.error;
}

TEST_F(ExecutorTest, JsonSchemaOutputIsCheckedAndParsed) {
  const std::string yaml = R"(
nodes:
  - {id: start, type: start}
  - id: label
    type: llm
    base_url: ")" + fake_.url() +
                           R"(/json"
    prompt: "label this"
    response_format:
      type: json_schema
      json_schema:
        name: label
        schema: {type: object, required: [label], properties: {label: {enum: [news, sports]}}}
    fallback: {default: {json: {label: unknown}}}
  - {id: out, type: end, outputs: {result: "{{ nodes.label.json }}"}}
)";
  RunResult r = RunIt(yaml);
  ASSERT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.outputs["result"], (Json{{"label", "news"}, {"score", 0.9}}));
  EXPECT_EQ(fake_.last_chat()["response_format"]["type"], "json_schema");
  fake_.json_reply = R"({"label":"cats"})";  // valid JSON, not valid by the schema
  r = RunIt(yaml);
  ASSERT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.outputs["result"]["label"], "unknown");
  EXPECT_NE(Find(r, "label")->error.find("schema"), std::string::npos);
}

TEST_F(ExecutorTest, StoreNodeKeepsStateBetweenRuns) {
  const std::string yaml = R"(
inputs: {user: string, msg: string}
nodes:
  - {id: start, type: start}
  - {id: load, type: store, op: get, key: "mem:{{ inputs.user }}"}
  - {id: save, type: store, op: set, key: "mem:{{ inputs.user }}", value: "{{ (nodes.load.value or []) + [inputs.msg] }}"}
  - {id: out, type: end, outputs: {before: "{{ nodes.load.value }}"}}
)";
  EXPECT_EQ(RunIt(yaml, {{"user", "u1"}, {"msg", "a"}}).outputs["before"], nullptr);
  EXPECT_EQ(RunIt(yaml, {{"user", "u1"}, {"msg", "b"}}).outputs["before"], Json::array({"a"}));
  EXPECT_EQ(RunIt(yaml, {{"user", "u1"}, {"msg", "c"}}).outputs["before"], Json::array({"a", "b"}));
}

TEST_F(ExecutorTest, MessageAndHttpNodesSendRenderedBodies) {
  RunResult r = RunIt(R"(
inputs: {who: string}
nodes:
  - {id: start, type: start}
  - id: call
    type: http
    method: POST
    url: ")" + fake_.url() +
                          R"(/echo"
    headers: {X-Who: "{{ inputs.who }}"}
    body: {greeting: "hi {{ inputs.who }}", n: 3}
  - {id: push, type: message, url: ")" +
                          fake_.url() + R"(/echo", text: "{{ nodes.call.json.greeting }}!"}
  - {id: out, type: end, outputs: {echo: "{{ nodes.call.json }}", pushed: "{{ nodes.push.delivered }}"}}
)",
                      {{"who", "ada"}});
  ASSERT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.outputs["echo"], (Json{{"greeting", "hi ada"}, {"n", 3}}));
  EXPECT_EQ(r.outputs["pushed"], true);
  EXPECT_EQ(Find(r, "push")->input["body"], R"({"text":"hi ada!"})");
  EXPECT_EQ(fake_.hits("/echo"), 2);
}

// The store node on Redis: needs redis-server (scripts/setup.sh installs it); started here.
TEST_F(ExecutorTest, StoreNodeOnRedis) {
  if (std::system("command -v redis-server >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "redis-server not installed";
  const int port = 20000 + static_cast<int>(getpid() % 20000);
  const std::string cmd =
      "redis-server --port " + std::to_string(port) +
      " --save '' --appendonly no --daemonize yes --pidfile /tmp/kiln-wf-redis-" +
      std::to_string(port) + ".pid >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string url = "redis://127.0.0.1:" + std::to_string(port);
  const std::string yaml = R"(
inputs: {v: integer}
nodes:
  - {id: start, type: start}
  - {id: load, type: store, op: get, key: counter, backend: ")" +
                           url + R"("}
  - {id: save, type: store, op: set, key: counter, backend: ")" +
                           url + R"(", value: "{{ (nodes.load.value or 0) + inputs.v }}", ttl_s: 60}
  - {id: out, type: end, outputs: {before: "{{ nodes.load.value }}"}}
)";
  EXPECT_EQ(RunIt(yaml, {{"v", 5}}).outputs["before"], nullptr);
  EXPECT_EQ(RunIt(yaml, {{"v", 2}}).outputs["before"], 5);
  RunResult r = RunIt(yaml, {{"v", 1}});
  EXPECT_EQ(r.outputs["before"], 7);
  EXPECT_EQ(r.status, "succeeded") << r.error;
  std::system(("kill $(cat /tmp/kiln-wf-redis-" + std::to_string(port) + ".pid)").c_str());
}

// The workflow API behind a loopback HTTP server, as `kiln serve` mounts it.
class WorkflowApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkflowApiOptions o;
    o.num_run_threads = 2;
    auto api = WorkflowApi::Create(o);
    ASSERT_TRUE(api.ok()) << api.status().ToString();
    api_ = std::move(*api);
    server::HttpServerOptions so;
    so.port = 0;
    so.num_threads = 2;
    auto s = server::HttpServer::Create(
        so, [this](server::HttpRequest r, std::shared_ptr<server::HttpResponder> w) {
          api_->Handle(r, w);
        });
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
    server_->Start();
  }
  void TearDown() override {
    if (api_) api_->Shutdown();
    if (server_) server_->Stop();
  }
  // (HTTP status, body as JSON)
  std::pair<int, Json> Call(const std::string& method, const std::string& path,
                            const std::string& body = "") {
    auto r = server::test_client::Fetch(server_->port(), method, path, body);
    return {r.status, Json::parse(r.body, nullptr, false)};
  }
  void PublishSimple() {
    const std::string spec =
        R"({"spec": {"name": "simple", "inputs": {"x": {"type": "string", "default": "hi"}},
            "nodes": [{"id": "start", "type": "start"},
                      {"id": "done", "type": "end", "outputs": {"x": "{{ inputs.x }}"}}]}})";
    ASSERT_EQ(Call("POST", "/v1/workflows", spec).first, 201);
    ASSERT_EQ(Call("POST", "/v1/workflows/simple/publish", "{}").first, 200);
  }

  std::unique_ptr<WorkflowApi> api_;
  std::unique_ptr<server::HttpServer> server_;
};

// Regression: body.value("user", "") and the like threw nlohmann's type_error on a worker thread
// for a field of another type, which terminated `kiln serve`. Each is a 400 naming the field.
TEST_F(WorkflowApiTest, FieldsOfTheWrongTypeAre400NamingTheField) {
  PublishSimple();
  for (const auto& [path, body, field] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"/v1/workflows/simple/runs", R"({"inputs": {"x": "a"}, "user": 42})", "user"},
           {"/v1/workflows/simple/runs", R"({"inputs": {"x": "a"}, "stream": "yes"})", "stream"},
           {"/v1/workflows/simple/runs", R"({"inputs": {"x": "a"}, "timeout_s": "1"})",
            "timeout_s"},
           {"/v1/workflows/simple/publish", R"({"note": ["v2"]})", "note"},
           {"/v1/workflows", R"({"name": 7, "yaml": "nodes: []"})", "name"}}) {
    const auto [status, json] = Call("POST", path, body);
    EXPECT_EQ(status, 400) << path << " " << body;
    ASSERT_TRUE(json.is_object()) << body;
    EXPECT_EQ(json["error"]["param"], field) << json.dump();
    EXPECT_NE(json["error"]["message"].get<std::string>().find("'" + field + "'"),
              std::string::npos)
        << json.dump();
  }
  // The server is still there, and a good request runs.
  const auto [status, run] = Call("POST", "/v1/workflows/simple/runs",
                                  R"({"inputs": {"x": "a"}, "user": "u1", "stream": false})");
  ASSERT_EQ(status, 200) << run.dump();
  EXPECT_EQ(run["status"], "succeeded");
  EXPECT_EQ(run["outputs"]["x"], "a");
}

// Regression: the body was parsed with no bound on nesting; 200,000 levels overflowed the stack.
TEST_F(WorkflowApiTest, DeeplyNestedBodiesAre400) {
  PublishSimple();
  const std::string deep =
      R"({"inputs": {"x": )" + std::string(200000, '[') + std::string(200000, ']') + "}}";
  const auto [status, json] = Call("POST", "/v1/workflows/simple/runs", deep);
  EXPECT_EQ(status, 400);
  EXPECT_NE(json["error"]["message"].get<std::string>().find("levels deep"), std::string::npos)
      << json.dump();
  const std::string yaml =
      "name: deepyaml\nnodes: " + std::string(100, '[') + std::string(100, ']') + "\n";
  const auto [ystatus, yjson] = Call("POST", "/v1/workflows", Json{{"yaml", yaml}}.dump());
  EXPECT_EQ(ystatus, 400);
  EXPECT_NE(yjson["error"]["message"].get<std::string>().find("64 levels"), std::string::npos)
      << yjson.dump();
  EXPECT_EQ(Call("GET", "/v1/workflows/simple").first, 200);
}

// Regression (with RunStoreTest.RollbackAndPublishClearTheSplit): a rollback left the split set.
TEST_F(WorkflowApiTest, RollbackClearsTheSplit) {
  PublishSimple();
  ASSERT_EQ(Call("POST", "/v1/workflows/simple/publish", "{}").first, 200);
  ASSERT_EQ(Call("POST", "/v1/workflows/simple/split",
                 R"({"split": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]})")
                .first,
            200);
  ASSERT_EQ(Call("POST", "/v1/workflows/simple/rollback", R"({"version": 1})").first, 200);
  const auto [status, info] = Call("GET", "/v1/workflows/simple");
  EXPECT_EQ(info["split"], Json::array());
  EXPECT_EQ(info["current_version"], 1);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(
        Call("GET", "/v1/workflows/simple/route?user=u" + std::to_string(i)).second["version"], 1);
  }
}

}  // namespace
}  // namespace kiln::workflow
