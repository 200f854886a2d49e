// The public Engine (include/kiln/engine.h): threads, queues, callbacks, validation and shutdown
// over the FakeBackend; and, when the CPU backend is built, the same engine on real models from
// ../shared (greedy reference, batch invariance, prefix reuse, preemption, chunked prefill).
#include "kiln/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/check.h"
#include "engine/engine_loop.h"
#include "engine/fake_backend.h"
#include "model/safetensors.h"

namespace kiln {
namespace {

std::unique_ptr<Engine> FakeEngine(EngineOptions o = {}, int64_t num_blocks = 512) {
  o.model.model_path = "/fake/model-name";
  auto backend = std::make_unique<FakeBackend>(64, 8, o.cache.block_size, num_blocks,
                                               std::vector<int32_t>{3}, 4096);
  auto engine = Engine::Impl::CreateWithBackend(o, std::move(backend), nullptr, nullptr,
                                                /*check_invariants_every_step=*/true);
  KILN_CHECK_OK(engine.status());
  return std::move(engine).value();
}

Request Greedy(std::vector<int32_t> prompt, int max_tokens, std::string id = "") {
  Request r;
  r.request_id = std::move(id);
  r.prompt_token_ids = std::move(prompt);
  r.sampling.temperature = 0.0f;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

std::vector<int32_t> Drain(RequestStream* s, RequestOutput* final_out = nullptr) {
  std::vector<int32_t> ids;
  RequestOutput out;
  int finals = 0;
  while (s->Next(&out)) {
    ids.insert(ids.end(), out.new_token_ids.begin(), out.new_token_ids.end());
    if (out.finished) {
      ++finals;
      if (final_out != nullptr) *final_out = out;
    }
  }
  EXPECT_EQ(finals, 1);
  return ids;
}

TEST(EngineTest, StreamsAndReportsModelInfo) {
  auto engine = FakeEngine();
  EXPECT_EQ(engine->model_info().served_model_name, "model-name");
  EXPECT_EQ(engine->model_info().vocab_size, 64);
  EXPECT_EQ(engine->model_info().max_model_len, 4096);
  EXPECT_EQ(engine->tokenizer(), nullptr);
  auto stream = engine->Submit(Greedy({1, 2, 4}, 10));
  ASSERT_TRUE(stream.ok()) << stream.status().ToString();
  EXPECT_FALSE((*stream)->request_id().empty());
  RequestOutput fin;
  EXPECT_EQ(Drain(stream->get(), &fin).size(), 10u);
  EXPECT_EQ(fin.finish_reason, FinishReason::kLength);
  EXPECT_EQ(fin.usage.prompt_tokens, 3);
  EXPECT_EQ(fin.usage.completion_tokens, 10);
  EXPECT_GE(fin.elapsed_s, fin.time_to_first_token_s);
  EXPECT_TRUE(Engine::Impl::CheckInvariants(engine.get()).ok());
  const EngineMetrics m = engine->Metrics();
  EXPECT_EQ(m.requests_finished_total, 1);
  EXPECT_EQ(m.generation_tokens_total, 10);
  EXPECT_EQ(m.num_kv_blocks_used, 0);
}

TEST(EngineTest, ValidationErrorsNameTheProblem) {
  auto engine = FakeEngine();
  auto expect = [&](Request r, StatusCode code, const std::string& needle) {
    auto s = engine->Submit(std::move(r), [](RequestOutput) {});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), code) << s.status().ToString();
    EXPECT_NE(s.status().message().find(needle), std::string::npos) << s.status().ToString();
  };
  expect(Greedy({}, 4), StatusCode::kInvalidArgument, "empty");
  expect(Greedy({1, 64}, 4), StatusCode::kInvalidArgument, "prompt_token_ids[1] = 64");
  expect(Greedy({1, -1}, 4), StatusCode::kInvalidArgument, "outside the vocabulary");
  expect(Greedy(std::vector<int32_t>(4000, 1), 100), StatusCode::kOutOfRange,
         "prompt (4000 tokens) + max_tokens (100) = 4100 exceeds max_model_len (4096)");
  Request bad_temp = Greedy({1}, 4);
  bad_temp.sampling.temperature = -1.0f;
  expect(bad_temp, StatusCode::kInvalidArgument, "temperature");
  Request bad_top_p = Greedy({1}, 4);
  bad_top_p.sampling.top_p = 0.0f;
  expect(bad_top_p, StatusCode::kInvalidArgument, "top_p");
  Request bad_stop = Greedy({1}, 4);
  bad_stop.sampling.stop_token_ids = {99};
  expect(bad_stop, StatusCode::kInvalidArgument, "stop_token_ids");
  Request negative = Greedy({1}, -1);
  expect(negative, StatusCode::kInvalidArgument, "max_tokens");
  Request json = Greedy({1}, 4);
  json.sampling.response_format.type = ResponseFormat::Type::kJsonObject;
  expect(json, StatusCode::kUnimplemented, "response_format");
  // PrepareResponseFormat reports what Submit would (no constraint factory here); kText is Ok.
  EXPECT_EQ(engine->PrepareResponseFormat(json.sampling.response_format).code(),
            StatusCode::kUnimplemented);
  EXPECT_TRUE(engine->PrepareResponseFormat(ResponseFormat{}).ok());
  Request score = Greedy({1}, 4);
  score.kind = RequestKind::kScore;
  expect(score, StatusCode::kInvalidArgument, "chosen_logprob_token_ids");
  // Duplicate live id.
  std::atomic<bool> release{false};
  auto first = engine->Submit(Greedy({1, 2}, 2000, "dup"), [](RequestOutput) {});
  ASSERT_TRUE(first.ok());
  expect(Greedy({1, 2}, 4, "dup"), StatusCode::kInvalidArgument, "already in use");
  engine->Abort("dup");
  engine->Shutdown(false);
  expect(Greedy({1}, 4), StatusCode::kFailedPrecondition, "shutting down");
}

// Regression (issue 18): echo with max_tokens 0 (prompt scoring) was refused by the engine. A
// generation of max_tokens 0 now prefills its prompt and finishes with kLength and no tokens,
// alone and batched with ordinary generations, leaving no KV blocks in use.
TEST(EngineTest, MaxTokensZeroRunsThePromptOnly) {
  auto engine = FakeEngine();
  auto stream = engine->Submit(Greedy({1, 2, 4, 5}, 0));
  ASSERT_TRUE(stream.ok()) << stream.status().ToString();
  RequestOutput fin;
  EXPECT_TRUE(Drain(stream->get(), &fin).empty());
  EXPECT_EQ(fin.finish_reason, FinishReason::kLength);
  EXPECT_TRUE(fin.error.ok());
  EXPECT_EQ(fin.usage.prompt_tokens, 4);
  EXPECT_EQ(fin.usage.completion_tokens, 0);
  auto a = engine->Submit(Greedy({1, 2, 3}, 5));
  auto b = engine->Submit(Greedy(std::vector<int32_t>(100, 7), 0));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(Drain(a->get()).size(), 5u);
  EXPECT_TRUE(Drain(b->get(), &fin).empty());
  EXPECT_EQ(fin.usage.prompt_tokens, 100);
  EXPECT_TRUE(Engine::Impl::CheckInvariants(engine.get()).ok());
  EXPECT_EQ(engine->Metrics().num_kv_blocks_used, 0);
}

TEST(EngineTest, CallbacksRunOnOneOutputThreadAndEveryRequestGetsOneFinal) {
  auto engine = FakeEngine();
  std::mutex mu;
  std::set<std::thread::id> callback_threads;
  std::map<std::string, int> finals;
  std::map<std::string, FinishReason> reasons;
  std::atomic<int> done{0};
  const auto submitter = std::this_thread::get_id();
  auto cb = [&](RequestOutput out) {
    std::lock_guard<std::mutex> lock(mu);
    callback_threads.insert(std::this_thread::get_id());
    if (out.finished) {
      ++finals[out.request_id];
      reasons[out.request_id] = out.finish_reason;
      ++done;
    }
  };
  // Four threads submit and abort concurrently.
  std::vector<std::thread> threads;
  std::atomic<int> accepted{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 50; ++i) {
        std::vector<int32_t> p(1 + rng() % 40);
        for (auto& v : p) v = static_cast<int32_t>(rng() % 64);
        const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (engine->Submit(Greedy(p, 1 + static_cast<int>(rng() % 30), id), cb).ok()) ++accepted;
        if (rng() % 3 == 0) engine->Abort(id);
        if (rng() % 5 == 0) engine->Abort("t" + std::to_string(t) + "-" + std::to_string(i / 2));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 2000 && done.load() < accepted.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(done.load(), accepted.load());
  EXPECT_EQ(accepted.load(), 200);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(callback_threads.size(), 1u);
  EXPECT_EQ(callback_threads.count(submitter), 0u);
  int aborted = 0;
  for (const auto& [id, n] : finals) {
    EXPECT_EQ(n, 1) << id;
    if (reasons[id] == FinishReason::kAbort) ++aborted;
  }
  EXPECT_GT(aborted, 0);
  EXPECT_TRUE(Engine::Impl::CheckInvariants(engine.get()).ok());
  EXPECT_EQ(engine->Metrics().num_kv_blocks_used, 0);
}

TEST(EngineTest, ShutdownFinishesOrAbortsRunningRequests) {
  {
    auto engine = FakeEngine();
    auto s = engine->Submit(Greedy({1, 2}, 50));
    ASSERT_TRUE(s.ok());
    engine->Shutdown(/*abort_running=*/false);
    RequestOutput fin;
    EXPECT_EQ(Drain(s->get(), &fin).size(), 50u);
    EXPECT_EQ(fin.finish_reason, FinishReason::kLength);
  }
  {
    auto engine = FakeEngine();
    auto s = engine->Submit(Greedy({1, 2}, 3000));
    ASSERT_TRUE(s.ok());
    engine.reset();  // destructor aborts
    RequestOutput fin;
    Drain(s->get(), &fin);
    EXPECT_EQ(fin.finish_reason, FinishReason::kAbort);
  }
}

TEST(EngineTest, CallbackMaySubmitAndAbort) {
  auto engine = FakeEngine();
  std::atomic<int> finals{0};
  std::function<void(RequestOutput)> cb;
  cb = [&](RequestOutput out) {
    if (!out.finished) return;
    if (++finals < 5) {
      ASSERT_TRUE(engine->Submit(Greedy({1, 2, 5}, 3), cb).ok());
      engine->Abort("nonexistent");
    }
  };
  ASSERT_TRUE(engine->Submit(Greedy({1, 2, 5}, 3), cb).ok());
  for (int i = 0; i < 1000 && finals.load() < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(finals.load(), 5);
}

// Regression guard: Shutdown from a callback (the output thread) must not try to join itself.
TEST(EngineTest, ShutdownFromCallbackDoesNotDeadlock) {
  auto engine = FakeEngine();
  std::atomic<bool> called{false};
  Engine* e = engine.get();
  ASSERT_TRUE(engine
                  ->Submit(Greedy({1, 2}, 3),
                           [&](RequestOutput out) {
                             if (out.finished) {
                               e->Shutdown(/*abort_running=*/false);
                               called = true;
                             }
                           })
                  .ok());
  for (int i = 0; i < 1000 && !called.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_TRUE(called.load());
  EXPECT_EQ(engine->Submit(Greedy({1}, 1), [](RequestOutput) {}).status().code(),
            StatusCode::kFailedPrecondition);
  engine->Shutdown(false);
}

// Issue 7: many inputs of one call run as one batch — SubmitBatch enqueues atomically, so every
// request is admitted in the same step; a bad request rejects the whole batch.
TEST(EngineTest, SubmitBatchRunsAsOneStep) {
  auto engine = FakeEngine();
  std::vector<Request> requests;
  std::vector<OutputCallback> callbacks;
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  for (int i = 0; i < 8; ++i) {
    Request r = Greedy({1, 2, 3, static_cast<int32_t>(4 + i)}, 1);
    r.kind = RequestKind::kEmbed;
    requests.push_back(std::move(r));
    callbacks.push_back([&](RequestOutput out) {
      if (!out.finished) return;
      EXPECT_EQ(out.finish_reason, FinishReason::kStop) << out.error.ToString();
      std::lock_guard<std::mutex> lock(mu);
      ++finished;
      cv.notify_all();
    });
  }
  const int64_t steps_before = engine->Metrics().num_steps;
  auto ids = engine->SubmitBatch(std::move(requests), std::move(callbacks));
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(ids->size(), 8u);
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return finished == 8; }));
  }
  EXPECT_EQ(engine->Metrics().num_steps - steps_before, 1);

  std::vector<Request> bad;
  bad.push_back(Greedy({1, 2}, 1));
  bad.push_back(Greedy({}, 1));  // empty prompt
  std::vector<OutputCallback> cbs(2, [](RequestOutput) {});
  auto rejected = engine->SubmitBatch(std::move(bad), std::move(cbs));
  ASSERT_FALSE(rejected.ok());
  EXPECT_NE(rejected.status().message().find("request 1"), std::string::npos);
  EXPECT_EQ(engine->Metrics().num_waiting + engine->Metrics().num_running, 0);
}

TEST(EngineTest, WaitingQueueLimit) {
  EngineOptions o;
  o.scheduler.max_waiting_requests = 3;
  o.scheduler.max_num_seqs = 1;
  auto engine = FakeEngine(o);
  int exhausted = 0;
  for (int i = 0; i < 20; ++i) {
    auto s = engine->Submit(Greedy({1, 2}, 500), [](RequestOutput) {});
    if (!s.ok()) {
      EXPECT_EQ(s.status().code(), StatusCode::kResourceExhausted);
      ++exhausted;
    }
  }
  EXPECT_GT(exhausted, 0);
}

TEST(OptionsTest, ValidateNamesTheField) {
  EngineOptions o;
  o.model.model_path = "x";
  EXPECT_TRUE(o.Validate().ok());
  o.cache.block_size = 12;
  EXPECT_NE(o.Validate().message().find("block_size"), std::string::npos);
  o.cache.block_size = 16;
  o.scheduler.max_num_batched_tokens = 8;
  EXPECT_NE(o.Validate().message().find("max_num_batched_tokens"), std::string::npos);
  o.scheduler.max_num_batched_tokens = 8192;
  o.device.device = "tpu";
  EXPECT_NE(o.Validate().message().find("device"), std::string::npos);
  EXPECT_STREQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_STREQ(FinishReasonName(FinishReason::kNone), "");
}

// ---- real models (CPU backend) ---------------------------------------------------------------

std::string SharedDir() {
  if (const char* s = std::getenv("KILN_SHARED")) return s;
  if (const char* src = std::getenv("KILN_SOURCE_DIR")) return std::string(src) + "/../shared";
  return "../shared";
}

bool Exists(const std::string& p) { return std::ifstream(p).good(); }

std::unique_ptr<Engine> RealEngine(const std::string& model_dir, EngineOptions o = {}) {
  o.model.model_path = model_dir;
  o.device.num_threads = 1;
  o.cache.kv_cache_memory_bytes = int64_t{16} << 20;  // tests need little KV; keep startup cheap
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return nullptr;
  return std::move(e).value();
}

#define KILN_REQUIRE_MODEL(dir) \
  if (!Exists(dir + "/config.json")) GTEST_SKIP() << "missing test model " << dir

TEST(EngineRealModelTest, StoriesGreedyMatchesReference) {
  const std::string dir = SharedDir() + "/models/stories260K/hf";
  KILN_REQUIRE_MODEL(dir);
  std::ifstream in(SharedDir() + "/models/stories260K/greedy256.ids");
  std::vector<int32_t> want;
  for (int32_t v; in >> v;) want.push_back(v);
  ASSERT_EQ(want.size(), 256u);
  auto engine = RealEngine(dir);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->model_info().architecture, "llama");
  EXPECT_EQ(engine->model_info().served_model_name, "hf");
  EXPECT_EQ(engine->model_info().max_model_len, 512);
  EXPECT_EQ(engine->model_info().eos_token_ids, std::vector<int32_t>{2});
  ASSERT_NE(engine->tokenizer(), nullptr);  // tokenizer.json sits next to the weights
  EXPECT_EQ(engine->tokenizer()->vocab_size(), 512);
  auto s = engine->Submit(Greedy({1}, 256));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(Drain(s->get()), want);
}

TEST(EngineRealModelTest, BatchInvarianceOf32StaggeredRequests) {
  const std::string dir = SharedDir() + "/models/stories260K/hf";
  KILN_REQUIRE_MODEL(dir);
  std::mt19937 rng(77);
  std::vector<Request> reqs;
  for (int i = 0; i < 32; ++i) {
    std::vector<int32_t> p = {1};
    const int n = 1 + static_cast<int>(rng() % 120);
    for (int j = 0; j < n; ++j) p.push_back(3 + static_cast<int32_t>(rng() % 500));
    reqs.push_back(Greedy(p, 8 + static_cast<int>(rng() % 24), "r" + std::to_string(i)));
  }
  std::vector<std::vector<int32_t>> alone;
  {
    auto engine = RealEngine(dir);
    ASSERT_NE(engine, nullptr);
    for (const Request& r : reqs) {
      auto s = engine->Submit(r);
      ASSERT_TRUE(s.ok());
      alone.push_back(Drain(s->get()));
    }
  }
  EngineOptions o;
  o.scheduler.max_num_batched_tokens = 256;  // prefill chunks mix with decodes
  o.cache.enable_prefix_caching = false;     // batching alone, no shared KV
  auto engine = RealEngine(dir, o);
  ASSERT_NE(engine, nullptr);
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (const Request& r : reqs) {
    auto s = engine->Submit(r);
    ASSERT_TRUE(s.ok());
    streams.push_back(std::move(s).value());
    std::this_thread::sleep_for(std::chrono::microseconds(300 * (rng() % 4)));
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    EXPECT_EQ(Drain(streams[i].get()), alone[i]) << "request " << i;
  }
  EXPECT_GT(engine->Metrics().num_steps, 0);
}

TEST(EngineRealModelTest, PrefixReuseAndPreemptionKeepOutputs) {
  const std::string dir = SharedDir() + "/models/stories260K/hf";
  KILN_REQUIRE_MODEL(dir);
  std::mt19937 rng(5);
  std::vector<int32_t> prefix = {1};
  for (int j = 0; j < 99; ++j) prefix.push_back(3 + static_cast<int32_t>(rng() % 500));
  auto a = prefix, b = prefix;
  for (int j = 0; j < 20; ++j) a.push_back(3 + static_cast<int32_t>(rng() % 500));
  for (int j = 0; j < 25; ++j) b.push_back(3 + static_cast<int32_t>(rng() % 500));
  std::vector<int32_t> cold_b;
  {
    EngineOptions o;
    o.cache.enable_prefix_caching = false;
    auto engine = RealEngine(dir, o);
    ASSERT_NE(engine, nullptr);
    auto s = engine->Submit(Greedy(b, 40));
    ASSERT_TRUE(s.ok());
    cold_b = Drain(s->get());
  }
  {
    auto engine = RealEngine(dir);
    ASSERT_NE(engine, nullptr);
    auto sa = engine->Submit(Greedy(a, 40));
    ASSERT_TRUE(sa.ok());
    Drain(sa->get());
    auto sb = engine->Submit(Greedy(b, 40));
    ASSERT_TRUE(sb.ok());
    RequestOutput fin;
    EXPECT_EQ(Drain(sb->get(), &fin), cold_b);
    EXPECT_EQ(fin.usage.cached_tokens, 96);
    EXPECT_EQ(engine->Metrics().prefix_cache_hits, 96);
  }
  {
    // 24 blocks of 16 = 384 slots; 8 requests of ~165 tokens each cannot all fit.
    EngineOptions o;
    o.cache.num_blocks = 24;
    o.scheduler.max_model_len = 384;
    auto engine = RealEngine(dir, o);
    ASSERT_NE(engine, nullptr);
    std::vector<std::unique_ptr<RequestStream>> streams;
    for (int i = 0; i < 8; ++i) {
      auto s = engine->Submit(Greedy(b, 40));
      ASSERT_TRUE(s.ok());
      streams.push_back(std::move(s).value());
    }
    for (auto& s : streams) EXPECT_EQ(Drain(s.get()), cold_b);
    EXPECT_GT(engine->Metrics().num_preemptions, 0);
    EXPECT_TRUE(Engine::Impl::CheckInvariants(engine.get()).ok());
    EXPECT_EQ(engine->Metrics().num_kv_blocks_used, 0);
  }
}

TEST(EngineRealModelTest, ChunkedPrefillMatchesOneShotLogits) {
  const std::string dir = SharedDir() + "/models/stories260K/hf";
  KILN_REQUIRE_MODEL(dir);
  std::mt19937 rng(9);
  std::vector<int32_t> prompt = {1};
  for (int j = 0; j < 300; ++j) prompt.push_back(3 + static_cast<int32_t>(rng() % 500));
  std::vector<TokenLogprob> scores[2];
  std::vector<float> hidden[2];
  for (int chunked = 0; chunked < 2; ++chunked) {
    EngineOptions o;
    o.scheduler.max_num_batched_tokens = chunked ? 32 : 8192;
    o.scheduler.max_num_seqs = chunked ? 32 : 256;
    auto engine = RealEngine(dir, o);
    ASSERT_NE(engine, nullptr);
    Request score = Greedy(prompt, 1);
    score.kind = RequestKind::kScore;
    for (int v = 0; v < 512; ++v) score.sampling.chosen_logprob_token_ids.push_back(v);
    Request embed = Greedy(prompt, 1);
    embed.kind = RequestKind::kEmbed;
    embed.return_all_hidden = true;
    RequestOutput fs, fe;
    auto ss = engine->Submit(score);
    ASSERT_TRUE(ss.ok()) << ss.status().ToString();
    Drain(ss->get(), &fs);
    auto se = engine->Submit(embed);
    ASSERT_TRUE(se.ok());
    Drain(se->get(), &fe);
    scores[chunked] = fs.score_logprobs;
    hidden[chunked] = fe.hidden_states;
    EXPECT_EQ(fe.hidden_size, 64);
  }
  ASSERT_EQ(scores[0].size(), 512u);
  ASSERT_EQ(scores[1].size(), 512u);
  float max_abs = 0;
  for (const auto& s : scores[0]) max_abs = std::max(max_abs, std::fabs(s.logprob));
  for (size_t i = 0; i < 512; ++i) {
    EXPECT_NEAR(scores[0][i].logprob, scores[1][i].logprob, 1e-4f * max_abs) << "id " << i;
  }
  ASSERT_EQ(hidden[0].size(), 301u * 64);
  ASSERT_EQ(hidden[1].size(), hidden[0].size());
  for (size_t i = 0; i < hidden[0].size(); ++i) ASSERT_NEAR(hidden[0][i], hidden[1][i], 1e-4f);
}

// Prompt logprobs (lm-eval's loglikelihood through echo + logprobs) against HF's own logits for
// the 257 reference tokens: each prompt position's logprob is log_softmax(ref logits of the
// previous position) at the prompt token, and the top alternatives are the reference's. Run in
// one shot (cut by logits rows), in chunks of 32 tokens, and with the prompt already in the prefix
// cache (prompt logprobs never start from the cache); with max_tokens 0 (scoring) and 3.
TEST(EngineRealModelTest, PromptLogprobsMatchHfReference) {
  const std::string dir = SharedDir() + "/models/stories260K/hf";
  KILN_REQUIRE_MODEL(dir);
  auto ref = SafetensorsFile::Open(dir + "/reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  auto ids = ReadSafetensorsInt32(**ref, "input_ids");
  auto ref_logits = ReadSafetensorsFloat(**ref, "logits");
  ASSERT_TRUE(ids.ok() && ref_logits.ok());
  const int T = static_cast<int>(ids->size());
  const int V = 512;
  ASSERT_EQ(ref_logits->size(), static_cast<size_t>(T) * V);
  // Reference log-softmax rows (double).
  std::vector<double> ref_lp(static_cast<size_t>(T) * V);
  for (int t = 0; t < T; ++t) {
    const float* row = ref_logits->data() + static_cast<size_t>(t) * V;
    double mx = row[0];
    for (int v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(row[v] - mx);
    for (int v = 0; v < V; ++v)
      ref_lp[static_cast<size_t>(t) * V + v] = row[v] - mx - std::log(sum);
  }
  struct Setup {
    int batched_tokens, max_seqs;
    bool warm_prefix;
  };
  for (const Setup& setup :
       {Setup{8192, 256, false}, Setup{32, 16, false}, Setup{8192, 40, true}}) {
    SCOPED_TRACE("max_num_batched_tokens " + std::to_string(setup.batched_tokens) +
                 ", max_num_seqs " + std::to_string(setup.max_seqs));
    EngineOptions o;
    o.scheduler.max_num_batched_tokens = setup.batched_tokens;
    o.scheduler.max_num_seqs = setup.max_seqs;
    auto engine = RealEngine(dir, o);
    ASSERT_NE(engine, nullptr);
    if (setup.warm_prefix) {  // the prompt's blocks are in the prefix cache
      auto w = engine->Submit(Greedy(*ids, 1));
      ASSERT_TRUE(w.ok());
      Drain(w->get());
    }
    for (int max_tokens : {0, 3}) {
      Request r = Greedy(*ids, max_tokens);
      r.sampling.prompt_logprobs = 3;
      // 256 prompt rows + the sampling row pass the CPU backend's 256 logits rows per step, so
      // the prefill is cut by rows even in one-shot mode; a concurrent decode shares the steps.
      auto other = engine->Submit(Greedy({1, 5, 9}, 20));
      ASSERT_TRUE(other.ok());
      auto s = engine->Submit(r);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      std::vector<PositionLogprobs> got;
      int outputs_with_prompt_logprobs = 0, generated = 0;
      RequestOutput out;
      bool finished = false;
      while ((*s)->Next(&out)) {
        if (!out.prompt_logprobs.empty()) {
          ++outputs_with_prompt_logprobs;
          got = out.prompt_logprobs;
          EXPECT_TRUE(generated == 0);  // in the first output
        }
        generated += static_cast<int>(out.new_token_ids.size());
        finished = out.finished;
        if (out.finished) {
          EXPECT_EQ(out.finish_reason, FinishReason::kLength);
          EXPECT_EQ(out.usage.cached_tokens, 0);
        }
      }
      Drain(other->get());
      EXPECT_TRUE(finished);
      EXPECT_EQ(generated, max_tokens);
      EXPECT_EQ(outputs_with_prompt_logprobs, 1);
      ASSERT_EQ(got.size(), static_cast<size_t>(T - 1));
      for (int q = 1; q < T; ++q) {
        const PositionLogprobs& p = got[static_cast<size_t>(q - 1)];
        const double* want = ref_lp.data() + static_cast<size_t>(q - 1) * V;
        ASSERT_EQ(p.chosen.token_id, (*ids)[static_cast<size_t>(q)]) << "position " << q;
        EXPECT_NEAR(p.chosen.logprob, want[p.chosen.token_id], 1e-4) << "position " << q;
        ASSERT_EQ(p.top.size(), 3u) << "position " << q;
        for (size_t k = 0; k < 3; ++k) {
          EXPECT_NEAR(p.top[k].logprob, want[p.top[k].token_id], 1e-4) << "position " << q;
        }
        // The top entry is the reference's argmax (or ties it).
        const double best = *std::max_element(want, want + V);
        EXPECT_NEAR(p.top[0].logprob, best, 1e-4) << "position " << q;
      }
    }
    EXPECT_TRUE(Engine::Impl::CheckInvariants(engine.get()).ok());
    EXPECT_EQ(engine->Metrics().num_kv_blocks_used, 0);
  }
}

TEST(EngineTest, PromptLogprobsOnlyForGeneration) {
  auto engine = FakeEngine();
  Request r = Greedy({1, 2, 4}, 1);
  r.kind = RequestKind::kEmbed;
  r.sampling.prompt_logprobs = 0;
  auto s = engine->Submit(r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("prompt_logprobs"), std::string::npos);
  r.kind = RequestKind::kGenerate;
  r.sampling.prompt_logprobs = -2;
  s = engine->Submit(r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("prompt_logprobs"), std::string::npos);
  // Without chunked prefill a prompt needing more logits rows than one step holds (256) is
  // refused (it used to wait forever at the head of the queue).
  EngineOptions o;
  o.scheduler.enable_chunked_prefill = false;
  auto unchunked = FakeEngine(o);
  std::vector<int32_t> long_prompt(300, 5);
  Request big = Greedy(long_prompt, 1);
  big.sampling.prompt_logprobs = 0;
  auto refused = unchunked->Submit(big);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("enable chunked prefill"), std::string::npos)
      << refused.status().ToString();
  big.prompt_token_ids.resize(200);
  auto fits = unchunked->Submit(big);
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  RequestOutput fin;
  EXPECT_EQ(Drain(fits->get(), &fin).size(), 1u);
  EXPECT_EQ(fin.finish_reason, FinishReason::kLength);
}

TEST(EngineRealModelTest, ResponseFormatConstrainsTheOutput) {
  const std::string dir = SharedDir() + "/models/stories260K/hf";
  KILN_REQUIRE_MODEL(dir);
  auto engine = RealEngine(dir);
  ASSERT_NE(engine, nullptr);
  ASSERT_NE(engine->tokenizer(), nullptr);
  const Tokenizer& tok = *engine->tokenizer();
  const std::vector<int32_t> prompt = tok.Encode("Once upon a time, there was a", true);
  // Unconstrained greedy output, to show the constraint changes something.
  auto free_run = engine->Submit(Greedy(prompt, 12));
  ASSERT_TRUE(free_run.ok());
  const auto free_ids = Drain(free_run->get());
  for (const auto& choices : std::vector<std::vector<std::string>>{{" dragon", " unicorn"},
                                                                   {" big red ball", " little"}}) {
    Request r = Greedy(prompt, 12);
    r.sampling.ignore_eos = false;
    r.sampling.response_format.type = ResponseFormat::Type::kChoice;
    r.sampling.response_format.choices = choices;
    auto s = engine->Submit(r);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    RequestOutput fin;
    const auto ids = Drain(s->get(), &fin);
    EXPECT_EQ(fin.finish_reason, FinishReason::kStop) << fin.error.ToString();
    std::vector<int32_t> text_ids = ids;
    if (!text_ids.empty() && text_ids.back() == 2) text_ids.pop_back();  // EOS
    auto text = tok.Decode(text_ids, true);
    ASSERT_TRUE(text.ok());
    const std::string t = *text;
    EXPECT_TRUE(std::find(choices.begin(), choices.end(), t) != choices.end() ||
                std::find(choices.begin(), choices.end(), " " + t) != choices.end())
        << "constrained output \"" << t << "\"";
    EXPECT_NE(ids, free_ids);
  }
  Request bad = Greedy(prompt, 4);
  bad.sampling.response_format.type = ResponseFormat::Type::kJsonSchema;
  bad.sampling.response_format.json_schema = "{not json";
  auto s = engine->Submit(bad, [](RequestOutput) {});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << s.status().ToString();
  // PrepareResponseFormat (what servers run on a compile thread) gives the same error, and
  // compiles a valid format ahead of its Submit.
  const Status prepared = engine->PrepareResponseFormat(bad.sampling.response_format);
  EXPECT_EQ(prepared.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(prepared.message(), s.status().message());
  ResponseFormat overlap;
  overlap.type = ResponseFormat::Type::kJsonSchema;
  overlap.json_schema = R"({"oneOf":[{"type":"integer"},{"type":"number"}]})";
  EXPECT_NE(engine->PrepareResponseFormat(overlap).message().find("oneOf branches 0 and 1"),
            std::string::npos);
  ResponseFormat choice;
  choice.type = ResponseFormat::Type::kChoice;
  choice.choices = {" yes", " no"};
  EXPECT_TRUE(engine->PrepareResponseFormat(choice).ok());
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// Regression: --kv-cache-dtype fp8 on the CUDA backend (whose cache is in the compute dtype) is
// refused with a message naming the option, never silently ignored. Decided before any device
// work, so it runs without a GPU.
TEST(EngineTest, CudaRefusesAKvCacheDtypeItDoesNotHold) {
  const std::string dir = SharedDir() + "/models/stories260K/hf";
  if (!Exists(dir + "/config.json")) GTEST_SKIP() << "missing " << dir;
  EngineOptions options;
  options.model.model_path = dir;
  options.device.device = "cuda";
  options.cache.kv_cache_dtype = "fp8";
  auto engine = Engine::Create(options);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(engine.status().message().find("kv_cache_dtype"), std::string::npos)
      << engine.status().ToString();
}

}  // namespace
}  // namespace kiln
