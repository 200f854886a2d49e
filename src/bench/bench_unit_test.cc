// Unit tests of the load generator's pure parts: percentiles, SSE and chunk parsing, workloads
// (determinism, growth, lengths, file errors), the SLO sweep on synthetic latency curves, /metrics
// parsing, summaries and reports. The client and runner are tested end to end by
// tests/bench/*.mjs (against kiln serve and against an independent test server).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include "bench/http_client.h"
#include "bench/production_table.h"
#include "bench/report.h"
#include "bench/runner.h"
#include "bench/server_stats.h"
#include "bench/slo_search.h"
#include "bench/sse.h"
#include "bench/stats.h"
#include "bench/workload.h"

namespace kiln::bench {
namespace {

using json = nlohmann::json;

TEST(Percentile, LinearInterpolationBetweenClosestRanks) {
  // numpy.percentile([5, 1, 4, 2, 3], [50, 90, 99]) = 3, 4.6, 4.96
  EXPECT_DOUBLE_EQ(Percentile({5, 1, 4, 2, 3}, 50), 3.0);
  EXPECT_NEAR(Percentile({5, 1, 4, 2, 3}, 90), 4.6, 1e-12);
  EXPECT_NEAR(Percentile({5, 1, 4, 2, 3}, 99), 4.96, 1e-12);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7.0);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0.0);
  const LatencySummary s = Summarize({0.1, 0.3, 0.2, 0.4});
  EXPECT_EQ(s.count, 4);
  EXPECT_NEAR(s.mean, 0.25, 1e-12);
  EXPECT_NEAR(s.p50, 0.25, 1e-12);
  EXPECT_DOUBLE_EQ(s.max, 0.4);
}

TEST(SseParser, EventsSurviveAnySplitAndLineEnding) {
  const std::string stream =
      ": comment\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata:[DONE]\n\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    std::vector<std::string> events;
    SseParser p([&](const std::string& d) { events.push_back(d); });
    p.Feed(std::string_view(stream).substr(0, cut));
    p.Feed(std::string_view(stream).substr(cut));
    p.Finish();
    ASSERT_EQ(events.size(), 3u) << "cut " << cut;
    EXPECT_EQ(events[0], "{\"a\":1}");
    EXPECT_EQ(events[1], "line1\nline2");
    EXPECT_EQ(events[2], "[DONE]");
  }
}

TEST(SseParser, FinishDispatchesAnUnterminatedEvent) {
  std::vector<std::string> events;
  SseParser p([&](const std::string& d) { events.push_back(d); });
  p.Feed("data: tail");
  EXPECT_TRUE(events.empty());
  p.Finish();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], "tail");
}

TEST(ParseStreamChunk, ChatCompletionsErrorsUsageAndDone) {
  StreamChunk c = ParseStreamChunk(
      R"({"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]})");
  EXPECT_EQ(c.content, "Hi");
  EXPECT_TRUE(c.finish_reason.empty());
  c = ParseStreamChunk(R"({"choices":[{"text":" there","finish_reason":"length"}]})");
  EXPECT_EQ(c.content, " there");
  EXPECT_EQ(c.finish_reason, "length");
  c = ParseStreamChunk(R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,
      "prompt_tokens_details":{"cached_tokens":8}}})");
  EXPECT_EQ(c.prompt_tokens, 12);
  EXPECT_EQ(c.completion_tokens, 3);
  EXPECT_EQ(c.cached_tokens, 8);
  c = ParseStreamChunk(R"({"error":{"message":"boom","type":"server_error"}})");
  EXPECT_EQ(c.error, "boom");
  EXPECT_TRUE(ParseStreamChunk("[DONE]").done);
  EXPECT_TRUE(ParseStreamChunk("not json").parse_error);
  c = ParseStreamChunk(R"({"choices":[{"message":{"role":"assistant","content":"full"}}]})");
  EXPECT_EQ(c.content, "full");
}

TEST(ParseBaseUrl, HostPortPrefixAndErrors) {
  auto e = ParseBaseUrl("http://127.0.0.1:8123");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, "8123");
  EXPECT_EQ(e->path_prefix, "");
  e = ParseBaseUrl("http://example.com/api/v1/");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port, "80");
  EXPECT_EQ(e->path_prefix, "/api");
  EXPECT_FALSE(ParseBaseUrl("https://x:1").ok());
  EXPECT_FALSE(ParseBaseUrl("localhost:8000").ok());
  EXPECT_FALSE(ParseBaseUrl("http://h:port").ok());
}

// Regression: error bodies were cut mid-character and the tool aborted writing them as JSON.
TEST(Utf8Prefix, CutsOnCharacterBoundariesAndJsonOutputSurvivesAnyBytes) {
  const std::string euro = "\xE2\x82\xAC";
  std::string text = "x";
  for (int i = 0; i < 133; ++i) text += euro;
  EXPECT_EQ(Utf8Prefix(text, 300).size(), 298u);  // 'x' + 99 whole characters
  EXPECT_EQ(Utf8Prefix(text, 298).size(), 298u);
  EXPECT_EQ(Utf8Prefix(text, 200).size(), 199u);
  EXPECT_EQ(Utf8Prefix(text, 1000), text);
  EXPECT_EQ(Utf8Prefix("abc", 2), "ab");
  EXPECT_EQ(Utf8Prefix(std::string(10, '\x80'), 5).size(), 5u);  // not UTF-8: cut where asked
  const std::string bad = "\xFF" + Utf8Prefix(text, 200);
  std::string out;
  EXPECT_NO_THROW(out = DumpJson(json{{"error_message", bad}}));
  EXPECT_EQ(out, "{\"error_message\":\"\xEF\xBF\xBD" + Utf8Prefix(text, 200) + "\"}");
}

// Regression: "http://[::1]:8000" parsed as host "[::1]:8000", port 80; the Host header needs the
// brackets back.
TEST(ParseBaseUrl, Ipv6LiteralsInBrackets) {
  struct Case {
    const char* url;
    const char* host;
    const char* port;
    const char* path_prefix;
    const char* host_header;
  };
  for (const Case& c :
       {Case{"http://[::1]:8000", "::1", "8000", "", "[::1]:8000"},
        Case{"http://[fe80::1:2]/proxy/v1", "fe80::1:2", "80", "/proxy", "[fe80::1:2]:80"},
        Case{"http://127.0.0.1:9", "127.0.0.1", "9", "", "127.0.0.1:9"}}) {
    auto e = ParseBaseUrl(c.url);
    ASSERT_TRUE(e.ok()) << c.url << ": " << e.status().ToString();
    EXPECT_EQ(e->host, c.host) << c.url;
    EXPECT_EQ(e->port, c.port) << c.url;
    EXPECT_EQ(e->path_prefix, c.path_prefix) << c.url;
    EXPECT_EQ(HostHeader(*e), c.host_header) << c.url;
  }
  for (const char* bad :
       {"http://[::1", "http://[::1]8000", "http://[::1]:", "http://[]:80", "http://[::1]:99999",
        "http://::1:8000", "http://h:80:81", "http://:80", "http://[x y]:80"}) {
    auto r = ParseBaseUrl(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) EXPECT_NE(r.status().message().find("--base-url"), std::string::npos) << bad;
  }
  EXPECT_NE(ParseBaseUrl("http://::1:8000").status().message().find("brackets"), std::string::npos);
}

WorkloadOptions SmallChat(uint64_t seed) {
  WorkloadOptions o;
  o.kind = "chat";
  o.seed = seed;
  o.num_conversations = 3;
  o.num_personas = 2;
  o.system_words_min = 20;
  o.system_words_max = 40;
  o.turns_min = 2;
  o.turns_max = 3;
  o.think_time_s = 0.5;
  return o;
}

// Drives a workload with a fixed schedule and fixed replies; returns the request bodies.
std::vector<std::string> Drive(Workload* w, int n) {
  std::vector<std::string> bodies;
  double t = 0;
  for (int i = 0; i < n; ++i) {
    double ready = 0;
    std::optional<BenchRequest> r = w->Next(t, &ready);
    if (!r) {
      t = ready;
      r = w->Next(t, &ready);
    }
    EXPECT_TRUE(r.has_value());
    if (!r) break;
    bodies.push_back(RequestBody(*r, "m"));
    w->Complete(*r, "reply " + std::to_string(i), true, t + 0.1);
    t += 0.2;
  }
  return bodies;
}

TEST(ChatWorkload, DeterministicForASeed) {
  auto a = CreateWorkload(SmallChat(7));
  auto b = CreateWorkload(SmallChat(7));
  auto c = CreateWorkload(SmallChat(8));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  const auto ra = Drive(a->get(), 20), rb = Drive(b->get(), 20), rc = Drive(c->get(), 20);
  EXPECT_EQ(ra, rb);
  EXPECT_NE(ra, rc);
}

TEST(ChatWorkload, HistoryGrowsTurnByTurnWithTheServersReplies) {
  auto w = CreateWorkload(SmallChat(1));
  ASSERT_TRUE(w.ok());
  double ready = 0;
  // Three conversations are ready at t = 0; the first is the longest-ready one (id 0).
  auto r0 = (*w)->Next(0, &ready);
  ASSERT_TRUE(r0);
  EXPECT_EQ(r0->conversation, 0);
  EXPECT_EQ(r0->turn, 0);
  ASSERT_EQ(r0->messages.size(), 2u);
  EXPECT_EQ(r0->messages[0].role, "system");
  EXPECT_GE(r0->max_tokens, 24);
  EXPECT_LE(r0->max_tokens, 64);
  EXPECT_TRUE(r0->ignore_eos);
  (*w)->Complete(*r0, "the reply text", true, 1.0);
  // Conversation 0 thinks; 1 and 2 are ready first.
  auto r1 = (*w)->Next(1.0, &ready);
  auto r2 = (*w)->Next(1.0, &ready);
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(r1->conversation, 1);
  EXPECT_EQ(r2->conversation, 2);
  // Nothing else is ready until conversation 0's think time ends.
  EXPECT_FALSE((*w)->Next(1.0, &ready));
  EXPECT_GT(ready, 1.0);
  auto again = (*w)->Next(ready, &ready);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->conversation, 0);
  EXPECT_EQ(again->turn, 1);
  ASSERT_EQ(again->messages.size(), 4u);
  EXPECT_EQ(again->messages[0].content, r0->messages[0].content);  // the same persona
  EXPECT_EQ(again->messages[1].content, r0->messages[1].content);
  EXPECT_EQ(again->messages[2].role, "assistant");
  EXPECT_EQ(again->messages[2].content, "the reply text");
}

// A chat workload of one conversation slot, `turns` turns per conversation.
std::unique_ptr<Workload> OneConversation(int turns, double think_time_s) {
  WorkloadOptions o = SmallChat(3);
  o.num_conversations = 1;
  o.turns_min = o.turns_max = turns;
  o.think_time_s = think_time_s;
  auto w = CreateWorkload(o);
  return w.ok() ? std::move(w).value() : nullptr;
}

TEST(ChatWorkload, FinishedConversationsAreReplaced) {
  auto w = OneConversation(2, 0);
  ASSERT_TRUE(w);
  double ready = 0;
  auto a = w->Next(0, &ready);
  ASSERT_TRUE(a);
  EXPECT_FALSE(w->Next(0, &ready));  // in flight
  EXPECT_TRUE(std::isinf(ready));
  w->Complete(*a, "x", true, 0.0);
  auto b = w->Next(0, &ready);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->conversation, 0);
  EXPECT_EQ(b->turn, 1);
  w->Complete(*b, "y", true, 0.0);
  auto c = w->Next(0, &ready);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->conversation, 1);  // a new conversation took the slot
  EXPECT_EQ(c->turn, 0);
}

// Regression: a failed turn was retried with the same history, so a conversation that outgrew the
// model's context failed forever. A failed turn ends the conversation; a new one takes its slot
// after a think time.
TEST(ChatWorkload, AFailedTurnEndsTheConversation) {
  auto w = OneConversation(5, 1.0);
  ASSERT_TRUE(w);
  double ready = 0;
  auto a = w->Next(0, &ready);
  ASSERT_TRUE(a);
  w->Complete(*a, "", false, 10.0);  // the first turn fails
  EXPECT_FALSE(w->Next(10.0, &ready));
  EXPECT_GE(ready, 10.0);  // after a think time
  auto b = w->Next(ready, &ready);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->slot, a->slot);
  EXPECT_EQ(b->conversation, 1);
  EXPECT_EQ(b->turn, 0);
  ASSERT_EQ(b->messages.size(), 2u);  // system + the first user turn: no history carried over
  w->Complete(*b, "ok", true, 20.0);
  auto c = w->Next(1e9, &ready);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->turn, 1);
  w->Complete(*c, "", false, 30.0);  // a later turn fails too
  auto d = w->Next(1e9, &ready);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->conversation, 2);
  EXPECT_EQ(d->turn, 0);
  EXPECT_EQ(d->messages.size(), 2u);
}

TEST(RandomWorkload, LengthsWithinTheRangeAndFixedIsExact) {
  WorkloadOptions o;
  o.kind = "random";
  o.input_len = 100;
  o.output_len = 40;
  o.range_ratio = 0.25;
  auto w = CreateWorkload(o);
  ASSERT_TRUE(w.ok());
  double ready = 0;
  bool varied = false;
  int first = -1;
  for (int i = 0; i < 200; ++i) {
    auto r = (*w)->Next(0, &ready);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->chat);
    EXPECT_TRUE(r->ignore_eos);
    const int words = static_cast<int>(std::count(r->prompt.begin(), r->prompt.end(), ' ')) + 1;
    EXPECT_GE(words, 75);
    EXPECT_LE(words, 125);
    EXPECT_GE(r->max_tokens, 30);
    EXPECT_LE(r->max_tokens, 50);
    if (first < 0) first = r->max_tokens;
    varied |= r->max_tokens != first;
  }
  EXPECT_TRUE(varied);
  o.kind = "fixed";
  w = CreateWorkload(o);
  ASSERT_TRUE(w.ok());
  for (int i = 0; i < 20; ++i) {
    auto r = (*w)->Next(0, &ready);
    EXPECT_EQ(std::count(r->prompt.begin(), r->prompt.end(), ' ') + 1, 100);
    EXPECT_EQ(r->max_tokens, 40);
  }
}

TEST(FileWorkload, ReadsPromptsAndMessagesAndNamesBadLines) {
  const std::string path = ::testing::TempDir() + "/bench_requests.jsonl";
  {
    std::ofstream f(path);
    f << R"({"prompt":"hello","max_tokens":5,"ignore_eos":true})"
      << "\n\n"
      << R"({"messages":[{"role":"user","content":"hi"}]})"
      << "\n";
  }
  WorkloadOptions o;
  o.kind = "file";
  o.path = path;
  o.output_len = 9;
  auto w = CreateWorkload(o);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  double ready = 0;
  auto a = (*w)->Next(0, &ready), b = (*w)->Next(0, &ready), c = (*w)->Next(0, &ready);
  EXPECT_FALSE(a->chat);
  EXPECT_EQ(a->prompt, "hello");
  EXPECT_EQ(a->max_tokens, 5);
  EXPECT_TRUE(a->ignore_eos);
  EXPECT_TRUE(b->chat);
  EXPECT_EQ(b->max_tokens, 9);
  EXPECT_EQ(c->prompt, "hello");  // cycles
  {
    std::ofstream f(path);
    f << R"({"prompt":"ok"})"
      << "\n"
      << R"({"prompt":"x","max_tokens":-1})"
      << "\n";
  }
  w = CreateWorkload(o);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find(":2:"), std::string::npos) << w.status().message();
  o.path = path + ".missing";
  EXPECT_FALSE(CreateWorkload(o).ok());
}

// A server whose P99 grows without bound as the rate approaches `capacity`.
StatusOr<PointVerdictInput> Synthetic(double rate, double capacity) {
  PointVerdictInput p;
  p.num_sent = 100;
  p.p99_e2e_s = rate < capacity ? 0.2 + 1.0 / (capacity - rate) : 1e9;
  return p;
}

TEST(SloSweep, BracketsAndBisectsToTheKnee) {
  SweepOptions o;
  o.start_rate = 1;
  o.slo_e2e_s = 1.5;
  o.max_points = 20;
  o.rel_tolerance = 0.05;
  const double knee = 10 - 1 / 1.3;  // P99 = 1.5 s exactly
  auto out = SloSweep(o, [](double r, int) { return Synthetic(r, 10); });
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(out->found);
  EXPECT_LE(out->best_rate, knee);
  EXPECT_GT(out->first_failing_rate, knee);
  EXPECT_LE((out->first_failing_rate - out->best_rate) / out->best_rate, 0.05);
  EXPECT_EQ(out->steps[out->best_step].rate, out->best_rate);
  // Starting above the knee halves down first.
  o.start_rate = 64;
  out = SloSweep(o, [](double r, int) { return Synthetic(r, 10); });
  ASSERT_TRUE(out.ok());
  EXPECT_FALSE(out->steps[0].passes);
  EXPECT_LE(out->best_rate, knee);
  EXPECT_LE((out->first_failing_rate - out->best_rate) / out->best_rate, 0.05);
  // Nothing passes.
  o.min_rate = 0.5;
  out = SloSweep(o, [](double r, int) { return Synthetic(r, 0.1); });
  ASSERT_TRUE(out.ok());
  EXPECT_FALSE(out->found);
  EXPECT_LE(out->steps.size(), 20u);
}

TEST(SloSweep, ErrorsAndStarvedArrivalsFailAPoint) {
  SweepOptions o;
  PointVerdictInput p;
  p.num_sent = 100;
  p.p99_e2e_s = 0.1;
  EXPECT_EQ(JudgePoint(p, o), "");
  p.num_failed = 5;
  EXPECT_NE(JudgePoint(p, o).find("failed"), std::string::npos);
  p.num_failed = 0;
  p.num_delayed_arrivals = 50;
  EXPECT_NE(JudgePoint(p, o).find("conversations"), std::string::npos);
  p.p99_e2e_s = 2;  // a saturated server also starves the chat workload: latency is the reason
  EXPECT_NE(JudgePoint(p, o).find("SLO"), std::string::npos);
  p.num_delayed_arrivals = 0;
  EXPECT_NE(JudgePoint(p, o).find("SLO"), std::string::npos);
  p.num_sent = 0;
  EXPECT_EQ(JudgePoint(p, o), "no request succeeded");
}

TEST(ServerStats, KilnCountersGiveTheHitRateOverThePoint) {
  const char* before =
      "# HELP x\nkiln_prefix_cache_queries_total{model_name=\"m\"} 100\n"
      "kiln_prefix_cache_hits_total{model_name=\"m\"} 10\n"
      "kiln_kv_cache_usage_ratio{model_name=\"m\"} 0.25\n";
  const char* after =
      "kiln_prefix_cache_queries_total{model_name=\"m\"} 300\n"
      "kiln_prefix_cache_hits_total{model_name=\"m\"} 160\n"
      "kiln_kv_cache_usage_ratio{model_name=\"m\"} 0.75\n";
  ServerStatsBuilder b;
  b.Add(ReadSnapshot(before));
  b.Add(ReadSnapshot(after));
  const ServerStats s = b.Build();
  EXPECT_TRUE(s.available);
  EXPECT_EQ(s.server, "kiln");
  EXPECT_DOUBLE_EQ(s.prefix_cache_hit_rate, 150.0 / 200.0);
  EXPECT_DOUBLE_EQ(s.kv_usage_mean, 0.5);
  EXPECT_DOUBLE_EQ(s.kv_usage_max, 0.75);
  // Label sets are summed (e.g. per tier); unknown servers report nothing.
  EXPECT_DOUBLE_EQ(ParseMetricsText("a{t=\"gpu\"} 1\na{t=\"host\"} 2.5\n")["a"], 3.5);
  EXPECT_FALSE(ReadSnapshot("some_other_metric 1\n").has_prefix_cache);
  ServerStatsBuilder none;
  none.Add(ReadSnapshot("foo 1\n"));
  EXPECT_FALSE(none.Build().available);
}

TEST(SummarizeRecords, RatesGoodputErrorsAndTpot) {
  std::vector<RequestRecord> rs(4);
  for (int i = 0; i < 4; ++i) {
    rs[i].start_s = i;
    rs[i].ok = true;
    rs[i].ttft_s = 0.1;
    rs[i].output_tokens = 11;
    rs[i].prompt_tokens = 20;
    rs[i].itl_s = {0.05, 0.05};
  }
  rs[0].e2e_s = 1.1;  // TPOT 0.1
  rs[1].e2e_s = 2.1;  // over a 1.5 s SLO
  rs[2].e2e_s = 0.6;
  rs[3].ok = false;
  rs[3].error_kind = "http_500";
  rs[3].e2e_s = 0.01;
  const PointSummary s = SummarizeRecords(rs, 1.5);
  EXPECT_EQ(s.num_sent, 4);
  EXPECT_EQ(s.num_ok, 3);
  EXPECT_EQ(s.errors.at("http_500"), 1);
  EXPECT_DOUBLE_EQ(s.duration_s, 3.1);  // first send 0 → last end 1 + 2.1
  EXPECT_NEAR(s.qps, 3 / 3.1, 1e-12);
  EXPECT_NEAR(s.goodput, 2 / 3.1, 1e-12);
  EXPECT_NEAR(s.output_tokens_per_s, 33 / 3.1, 1e-12);
  EXPECT_NEAR(s.total_tokens_per_s, 93 / 3.1, 1e-12);
  EXPECT_NEAR(s.tpot_s.p50, 0.1, 1e-12);  // median of (0.6-0.1)/10, (1.1-0.1)/10, (2.1-0.1)/10
  EXPECT_EQ(s.itl_s.count, 6);
}

// Regression: one failed request that ran into a long timeout stretched the window to its end
// (605 s here), shrinking QPS, tokens/s and goodput by 60x while the point still passed.
TEST(SummarizeRecords, AFailedRequestDoesNotStretchTheWindow) {
  std::vector<RequestRecord> rs(100);
  for (int i = 0; i < 100; ++i) {
    rs[i].start_s = i * 0.1;
    rs[i].e2e_s = 0.1;
    rs[i].ttft_s = 0.05;
    rs[i].ok = true;
    rs[i].output_tokens = 4;
  }
  RequestRecord failed;
  failed.start_s = 5;
  failed.e2e_s = 600;
  failed.error_kind = "timeout";
  rs.push_back(failed);
  const PointSummary s = SummarizeRecords(rs, 1.5);
  EXPECT_EQ(s.num_failed, 1);
  EXPECT_NEAR(s.duration_s, 10.0, 1e-9);
  EXPECT_NEAR(s.qps, 10.0, 1e-9);
  EXPECT_NEAR(s.goodput, 10.0, 1e-9);
  EXPECT_NEAR(s.output_tokens_per_s, 40.0, 1e-9);
  // A failed request sent last still ends the window at its send.
  failed.start_s = 12;
  failed.e2e_s = 600;
  rs.push_back(failed);
  EXPECT_NEAR(SummarizeRecords(rs, 1.5).duration_s, 12.0, 1e-9);
}

json FakeResult() {
  PointResult p;
  p.target_rate = 2;
  RequestRecord r;
  r.ok = true;
  r.e2e_s = 0.5;
  r.ttft_s = 0.1;
  r.output_tokens = 3;
  p.records = {r};
  p.summary = SummarizeRecords(p.records, 1.5);
  SweepStep step{2, true, ""};
  json series = {
      {"name", "s1"},
      {"points", json::array({PointToJson(p, &step)})},
      {"sweep",
       {{"found", true}, {"best_rate", 2.0}, {"best_point", 0}, {"first_failing_rate", 4.0}}},
      {"e2e_samples_ms", {500.0}}};
  return {{"config", {{"model", "</script><script>alert(1)</script>"}, {"slo_p99_ms", 1500}}},
          {"series", json::array({series, {{"name", "FP8"}, {"error", "unknown flag --x"}}})}};
}

TEST(Report, HtmlIsSelfContainedAndEmbedsTheResultSafely) {
  const std::string html = RenderHtml(FakeResult());
  EXPECT_EQ(html.find("__KILN_BENCH_DATA__"), std::string::npos);
  EXPECT_EQ(html.find("<script src"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  // The only URL is the SVG namespace name (never fetched).
  size_t pos = 0;
  while ((pos = html.find("http://", pos)) != std::string::npos) {
    EXPECT_EQ(html.compare(pos, 26, "http://www.w3.org/2000/svg"), 0);
    ++pos;
  }
  EXPECT_EQ(html.find("</script><script>alert"), std::string::npos);
  EXPECT_NE(html.find("\\u003c/script>"), std::string::npos);
}

TEST(Report, ProductionTableShowsUnavailableConfigurationsWithTheirMessage) {
  const std::string t = ProductionTable(FakeResult());
  EXPECT_NE(t.find("s1"), std::string::npos);
  EXPECT_NE(t.find("2.00"), std::string::npos);
  EXPECT_NE(t.find("FP8: not available: unknown flag --x"), std::string::npos) << t;
}

// Regression: the bf16 rows ran with the default --quantization auto, so an FP8 checkpoint was
// measured as "bf16".
TEST(ProductionConfigs, Bf16RowsAreDenseAndFp8RowsQuantize) {
  auto quantization = [](const ServerConfig& c) {
    for (size_t i = 0; i + 1 < c.args.size(); ++i) {
      if (c.args[i] == "--quantization") return c.args[i + 1];
    }
    return std::string();
  };
  int seen = 0;
  for (const ServerConfig& c : ProductionConfigs(8)) {
    if (c.key == "bf16" || c.key == "bf16-pc") {
      EXPECT_EQ(quantization(c), "none") << c.key;
      ++seen;
    } else {
      EXPECT_EQ(quantization(c), "fp8") << c.key;
    }
  }
  EXPECT_EQ(seen, 2);
}

}  // namespace
}  // namespace kiln::bench
