// Async scheduling (engine_core.h): step n+1 is launched before step n's samples are read, with
// placeholders fed through ForwardBatch::deferred_tokens. These tests drive EngineCore over the
// FakeBackend in both modes (async: samples never ready before WaitSample, as on a GPU; sync:
// ready at once, as on the CPU backend) and check that results, stop semantics, abort, preemption
// and the prefix cache are unchanged, that finished-at-n rows are discarded, and that grammar
// masks overlap the forward pass (issue #6) and see the previous token.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>

#include "engine/engine_test_util.h"

namespace kiln {
namespace {

using testing::CoreHarness;
using testing::CoreHarnessOptions;
using testing::RandomTokens;

CoreHarnessOptions Mode(bool async, CoreHarnessOptions o = {}) {
  o.async_backend = async;
  return o;
}

std::vector<int32_t> Solo(const std::vector<int32_t>& prompt, const SamplingParams& sp) {
  CoreHarness h(Mode(false));
  h.Add("solo", prompt, sp);
  h.RunUntilIdle();
  return h.results["solo"].ids;
}

// testing::ExpectDrained, and every generate request got one output per token (the final one
// merged into the last token's, nothing after it) and was billed for exactly those tokens.
void ExpectDrainedExactly(CoreHarness& h) {
  testing::ExpectDrained(h);
  for (const auto& [id, c] : h.results) {
    if (c.final_output.finish_reason != FinishReason::kAbort) {
      EXPECT_EQ(c.num_outputs, static_cast<int>(c.ids.size())) << id;
    }
    EXPECT_EQ(c.final_output.usage.completion_tokens, static_cast<int>(c.ids.size())) << id;
  }
}

struct Workload {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
};

Workload MakeWorkload(uint32_t seed, int n) {
  std::mt19937 rng(seed);
  Workload w;
  for (int i = 0; i < n; ++i) {
    w.prompts.push_back(RandomTokens(&rng, 1 + static_cast<int>(rng() % 150), 64));
    SamplingParams sp = CoreHarness::Greedy(2 + static_cast<int>(rng() % 40));
    if (i % 3 == 1) {
      sp.temperature = 0.9f;
      sp.seed = 500 + i;
    }
    if (i % 5 == 4) sp.min_tokens = 3;
    w.params.push_back(sp);
  }
  return w;
}

// Staggered arrivals with chunked prefills; returns the harness after draining.
std::unique_ptr<CoreHarness> RunWorkload(const Workload& w, bool async) {
  CoreHarnessOptions o;
  o.max_num_batched_tokens = 80;
  o.max_num_seqs = 10;
  auto h = std::make_unique<CoreHarness>(Mode(async, o));
  size_t next = 0;
  for (int step = 0; next < w.prompts.size() || h->core->has_work(); ++step) {
    EXPECT_LT(step, 100000);
    if (step >= 100000) break;
    if (next < w.prompts.size() && step % 2 == 0) {
      h->Add("r" + std::to_string(next), w.prompts[next], w.params[next]);
      ++next;
    }
    h->Step();
  }
  return h;
}

TEST(AsyncPipelineTest, BatchedAsyncEqualsSyncAndSoloRuns) {
  const Workload w = MakeWorkload(11, 30);
  auto async = RunWorkload(w, true);
  auto sync = RunWorkload(w, false);
  int stopped_by_eos = 0;
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    const std::string id = "r" + std::to_string(i);
    const auto& a = async->results[id];
    const auto& s = sync->results[id];
    EXPECT_EQ(a.ids, s.ids) << id;
    EXPECT_EQ(a.ids, Solo(w.prompts[i], w.params[i])) << id;
    EXPECT_EQ(a.final_output.finish_reason, s.final_output.finish_reason) << id;
    EXPECT_EQ(a.final_output.stop_token_id, s.final_output.stop_token_id) << id;
    if (a.final_output.stop_token_id == 3) ++stopped_by_eos;
  }
  ASSERT_GT(stopped_by_eos, 0);  // requests that finished at step n while n+1 was launched
  // The pipelined run fed tokens it had not read yet; the synchronous one never did.
  EXPECT_GT(async->backend.num_deferred_tokens(), 0);
  EXPECT_EQ(sync->backend.num_deferred_tokens(), 0);
  // Each EOS-stopped request wasted at most its one row of the step after it finished.
  const int64_t extra = async->backend.num_tokens_computed() - sync->backend.num_tokens_computed();
  EXPECT_GT(extra, 0);
  EXPECT_LE(extra, stopped_by_eos);
  ExpectDrainedExactly(*async);
  ExpectDrainedExactly(*sync);
}

TEST(AsyncPipelineTest, AsyncSchedulingOffWaitsForEachStepsSamples) {
  // Same workload with the pipelined backend but async_scheduling off: identical results, no
  // deferred tokens, no wasted rows.
  const Workload w = MakeWorkload(13, 12);
  CoreHarnessOptions o = Mode(true);
  o.async_scheduling = false;
  CoreHarness off(o), sync(Mode(false));
  for (CoreHarness* h : {&off, &sync}) {
    for (size_t i = 0; i < w.prompts.size(); ++i) {
      h->Add("r" + std::to_string(i), w.prompts[i], w.params[i]);
    }
    h->RunUntilIdle();
  }
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    const std::string id = "r" + std::to_string(i);
    EXPECT_EQ(off.results[id].ids, sync.results[id].ids) << id;
  }
  EXPECT_EQ(off.backend.num_deferred_tokens(), 0);
  EXPECT_EQ(off.backend.num_tokens_computed(), sync.backend.num_tokens_computed());
  ExpectDrainedExactly(off);
}

// A prompt whose greedy continuation stops at EOS (id 3) before max_tokens.
std::vector<int32_t> PromptThatStopsAtEos(const SamplingParams& sp) {
  for (int32_t k = 4; k < 64; ++k) {
    std::vector<int32_t> p = {1, 2, k, 5};
    CoreHarness h(Mode(false));
    h.Add("x", p, sp);
    h.RunUntilIdle();
    const auto& c = h.results["x"];
    if (c.final_output.stop_token_id == 3 && c.ids.size() >= 2) return p;
  }
  ADD_FAILURE() << "no prompt stops at EOS";
  return {1, 2, 4, 5};
}

TEST(AsyncPipelineTest, RowOfARequestFinishedAtStepNIsDiscarded) {
  const SamplingParams sp = CoreHarness::Greedy(60);
  const auto prompt = PromptThatStopsAtEos(sp);
  CoreHarness sync(Mode(false)), async(Mode(true));
  for (CoreHarness* h : {&sync, &async}) {
    h->Add("x", prompt, sp);
    h->RunUntilIdle();
  }
  const auto& a = async.results["x"];
  EXPECT_EQ(a.ids, sync.results["x"].ids);
  EXPECT_EQ(a.ids.back(), 3);
  EXPECT_EQ(a.final_output.finish_reason, FinishReason::kStop);
  // Exactly one wasted row: the step launched after the EOS step, before EOS was seen.
  EXPECT_EQ(async.backend.num_tokens_computed(), sync.backend.num_tokens_computed() + 1);
  ExpectDrainedExactly(async);
}

TEST(AsyncPipelineTest, LengthLimitedRequestsWasteNoRow) {
  std::mt19937 rng(5);
  SamplingParams sp = CoreHarness::Greedy(17);
  sp.ignore_eos = true;
  CoreHarness sync(Mode(false)), async(Mode(true));
  for (CoreHarness* h : {&sync, &async}) {
    std::mt19937 r(5);
    for (int i = 0; i < 4; ++i) h->Add("l" + std::to_string(i), RandomTokens(&r, 20 + i, 64), sp);
    h->RunUntilIdle();
  }
  for (int i = 0; i < 4; ++i) {
    const std::string id = "l" + std::to_string(i);
    EXPECT_EQ(async.results[id].ids.size(), 17u);
    EXPECT_EQ(async.results[id].ids, sync.results[id].ids);
    EXPECT_EQ(async.results[id].final_output.finish_reason, FinishReason::kLength);
  }
  EXPECT_EQ(async.backend.num_tokens_computed(), sync.backend.num_tokens_computed());
  ExpectDrainedExactly(async);
}

// The rows handed to SampleAsync point into each request's token ids (prompt / output spans for
// the penalties); pushing the next step's placeholder must not move those ids under them. Short
// prompts and long outputs make the token vector grow many times; a moved buffer shows as freed
// memory (allocator bookkeeping) in the spans.
TEST(AsyncPipelineTest, SamplingRowsKeepValidTokenSpansWhilePlaceholdersAreAdded) {
  for (bool async : {false, true}) {
    CoreHarness h(Mode(async));
    int checked = 0;
    std::vector<std::string> bad;
    h.backend.set_sample_hook([&](std::span<const SamplingRow> rows) {
      for (const SamplingRow& row : rows) {
        for (auto span : {row.prompt_token_ids, row.output_token_ids}) {
          for (int32_t id : span) {
            ++checked;
            if (id < 0 || id >= 64) bad.push_back(std::to_string(id));
          }
        }
      }
    });
    std::mt19937 r(9);
    SamplingParams sp = CoreHarness::Greedy(200);
    sp.ignore_eos = true;
    sp.presence_penalty = 0.5f;
    for (int i = 0; i < 6; ++i) h.Add("p" + std::to_string(i), RandomTokens(&r, 1 + i % 2, 64), sp);
    h.RunUntilIdle();
    EXPECT_GT(checked, 10000);
    EXPECT_TRUE(bad.empty()) << (async ? "async" : "sync") << ": " << bad.size()
                             << " invalid ids in sampling spans, first " << bad.front();
    for (int i = 0; i < 6; ++i) EXPECT_EQ(h.results["p" + std::to_string(i)].ids.size(), 200u);
  }
}

TEST(AsyncPipelineTest, AbortWhileItsSampleIsInFlight) {
  std::mt19937 rng(3);
  SamplingParams sp = CoreHarness::Greedy(30);
  sp.ignore_eos = true;
  const auto pa = RandomTokens(&rng, 40, 64), pb = RandomTokens(&rng, 50, 64);
  CoreHarness h(Mode(true));
  h.Add("a", pa, sp);
  h.Add("b", pb, sp);
  for (int i = 0; i < 6; ++i) h.Step();
  ASSERT_TRUE(h.core->has_work());
  const size_t emitted = h.results["a"].ids.size();
  ASSERT_GT(emitted, 0u);
  ASSERT_TRUE(h.Abort("a"));  // its next token is being sampled: the sample must be dropped
  const auto& a = h.results["a"];
  EXPECT_EQ(a.num_finals, 1);
  EXPECT_EQ(a.final_output.finish_reason, FinishReason::kAbort);
  EXPECT_EQ(a.final_output.usage.completion_tokens, static_cast<int>(emitted));
  const int outputs_at_abort = a.num_outputs;
  h.RunUntilIdle();
  EXPECT_EQ(h.results["a"].num_outputs, outputs_at_abort);  // nothing after the final output
  EXPECT_EQ(h.results["a"].ids.size(), emitted);
  const auto solo_a = Solo(pa, sp);
  EXPECT_EQ(h.results["a"].ids, std::vector<int32_t>(solo_a.begin(), solo_a.begin() + emitted));
  EXPECT_EQ(h.results["b"].ids, Solo(pb, sp));
  ExpectDrainedExactly(h);
}

TEST(AsyncPipelineTest, PreemptionWithPendingTokensKeepsOutputs) {
  // A pool too small for all requests, EOS enabled: requests are preempted while their next token
  // is being sampled and resume (prefix cache or recompute) once it is known.
  for (bool prefix_caching : {true, false}) {
    CoreHarnessOptions o;
    o.num_blocks = 12;
    o.max_model_len = 12 * 16;
    o.max_num_batched_tokens = 40;
    o.prefix_caching = prefix_caching;
    std::mt19937 rng(17);
    CoreHarness h(Mode(true, o));
    std::vector<std::vector<int32_t>> prompts;
    std::vector<SamplingParams> params;
    for (int i = 0; i < 8; ++i) {
      prompts.push_back(RandomTokens(&rng, 20 + 6 * i, 64));
      params.push_back(CoreHarness::Greedy(50));
      params.back().ignore_eos = i % 2 == 0;
      h.Add("p" + std::to_string(i), prompts.back(), params.back());
    }
    h.RunUntilIdle();
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(h.results["p" + std::to_string(i)].ids,
                Solo(prompts[static_cast<size_t>(i)], params[static_cast<size_t>(i)]))
          << "request " << i << " prefix caching " << prefix_caching;
    }
    EXPECT_GT(h.core->metrics().num_preemptions, 0);
    EXPECT_GT(h.backend.num_deferred_tokens(), 0);
    ExpectDrainedExactly(h);
  }
}

TEST(AsyncPipelineTest, PrefixCacheHitWhileTheFirstRequestIsInFlight) {
  std::mt19937 rng(8);
  const auto prefix = RandomTokens(&rng, 64, 64);
  auto a = prefix, b = prefix;
  for (int32_t t : RandomTokens(&rng, 10, 64)) a.push_back(t);
  for (int32_t t : RandomTokens(&rng, 12, 64)) b.push_back(t);
  SamplingParams sp = CoreHarness::Greedy(20);
  sp.ignore_eos = true;
  CoreHarness h(Mode(true));
  h.Add("a", a, sp);
  h.Step();  // a's prefill is launched; its blocks are cached
  h.Step();
  h.Add("b", b, sp);
  h.RunUntilIdle();
  EXPECT_EQ(h.results["b"].final_output.usage.cached_tokens, 64);
  EXPECT_EQ(h.results["a"].ids, Solo(a, sp));
  EXPECT_EQ(h.results["b"].ids, Solo(b, sp));
  ExpectDrainedExactly(h);
}

// Allows exactly one token per position, which depends on every token accepted before: a mask
// computed before the previous token was accepted would allow the wrong one.
class CountingConstraint final : public TokenConstraint {
 public:
  explicit CountingConstraint(std::atomic<int>* fills, std::condition_variable* cv, std::mutex* mu)
      : fills_(fills), cv_(cv), mu_(mu) {}
  void FillNextTokenBitmask(uint32_t* bitmask) override {
    const int32_t want = 4 + 2 * accepted_;
    bitmask[0] = bitmask[1] = 0;
    bitmask[want / 32] = 1u << (want % 32);
    {
      std::lock_guard<std::mutex> lock(*mu_);
      fills_->fetch_add(1);
    }
    cv_->notify_all();
  }
  Status AcceptToken(int32_t token_id) override {
    if (token_id != 4 + 2 * accepted_) {
      return Status::Internal("token " + std::to_string(token_id) + " was not allowed");
    }
    ++accepted_;
    return Status::Ok();
  }
  bool IsTerminated() const override { return accepted_ == 6; }

 private:
  int accepted_ = 0;
  std::atomic<int>* fills_;
  std::condition_variable* cv_;
  std::mutex* mu_;
};

struct MaskRun {
  std::vector<int32_t> ids;
  FinishReason reason = FinishReason::kNone;
  int forwards = 0;
  int forwards_that_saw_their_mask = 0;
};

// One constrained request (a mask every step) beside an unconstrained one. The backend's Forward
// waits (bounded) until this step's mask was filled: it only sees it when masks are computed
// concurrently with the forward pass.
MaskRun RunConstrained(bool async) {
  std::atomic<int> fills{0};
  std::condition_variable cv;
  std::mutex mu;
  CoreHarness h(Mode(async));
  MaskRun run;
  bool gave_up = async;  // pipelined: this step's mask needs the sample read after Forward
  h.backend.set_forward_hook([&] {
    ++run.forwards;
    std::unique_lock<std::mutex> lock(mu);
    const bool seen = !gave_up && cv.wait_for(lock, std::chrono::seconds(5),
                                              [&] { return fills.load() >= run.forwards; });
    if (seen) {
      ++run.forwards_that_saw_their_mask;
    } else {
      gave_up = true;  // do not wait again: the test fails either way
    }
  });
  auto r = std::make_unique<RequestState>();
  r->request_id = "c";
  r->token_ids = {1, 2, 4, 5};
  r->sampling = CoreHarness::Greedy(50);
  r->sampling.ignore_eos = true;
  r->constraint = std::make_unique<CountingConstraint>(&fills, &cv, &mu);
  h.core->AddRequest(std::move(r));
  h.RunUntilIdle();
  run.ids = h.results["c"].ids;
  run.reason = h.results["c"].final_output.finish_reason;
  ExpectDrainedExactly(h);
  return run;
}

TEST(AsyncPipelineTest, MasksOverlapTheForwardPassOnASynchronousBackend) {
  const MaskRun run = RunConstrained(/*async=*/false);
  EXPECT_EQ(run.ids, (std::vector<int32_t>{4, 6, 8, 10, 12, 14}));
  EXPECT_EQ(run.reason, FinishReason::kStop);
  EXPECT_EQ(run.forwards, 6);
  // Every forward pass ran while its step's mask was being (or had been) filled off the engine
  // thread; masks computed after Forward returns would fail this.
  EXPECT_EQ(run.forwards_that_saw_their_mask, run.forwards);
}

TEST(AsyncPipelineTest, PipelinedMasksSeeThePreviousToken) {
  // In the pipelined mode step n+1's mask needs token n: it is filled after step n's sample is
  // read (while the device runs step n+1), so the grammar still advances one token at a time.
  const MaskRun run = RunConstrained(/*async=*/true);
  EXPECT_EQ(run.ids, (std::vector<int32_t>{4, 6, 8, 10, 12, 14}));
  EXPECT_EQ(run.reason, FinishReason::kStop);
}

}  // namespace
}  // namespace kiln
