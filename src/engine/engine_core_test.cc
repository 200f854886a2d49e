// EngineCore over the deterministic FakeBackend: batching, chunking, prefix caching, preemption,
// abort, stop conditions and failure handling. Every harness checks the block accounting
// invariant after every step (check_invariants_every_step) and at the end of each test.
#include "engine/engine_core.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "engine/engine_test_util.h"

namespace kiln {
namespace {

using testing::CoreHarness;
using testing::CoreHarnessOptions;
using testing::ExpectDrained;
using testing::RandomTokens;

std::vector<int32_t> RunAlone(const std::vector<int32_t>& prompt, const SamplingParams& sp,
                              CoreHarnessOptions o = {}) {
  o.num_blocks = 1024;
  o.max_num_batched_tokens = 8192;
  CoreHarness h(o);
  h.Add("alone", prompt, sp);
  h.RunUntilIdle();
  return h.results["alone"].ids;
}

TEST(EngineCoreTest, BatchInvarianceWithStaggeredArrivalsAndChunking) {
  std::mt19937 rng(42);
  CoreHarnessOptions o;
  o.max_num_batched_tokens = 96;  // forces chunked prefills mixed with decodes
  o.max_num_seqs = 12;
  CoreHarness h(o);
  struct Req {
    std::vector<int32_t> prompt;
    SamplingParams sp;
  };
  std::vector<Req> reqs;
  for (int i = 0; i < 32; ++i) {
    Req r;
    r.prompt = RandomTokens(&rng, 1 + static_cast<int>(rng() % 200), 64);
    r.sp = CoreHarness::Greedy(4 + static_cast<int>(rng() % 40));
    if (i % 4 == 1) r.sp.ignore_eos = true;
    if (i % 4 == 2) {  // sampled: reproducible by (seed, step) regardless of batching
      r.sp.temperature = 0.8f;
      r.sp.seed = 1000 + i;
    }
    reqs.push_back(r);
  }
  int next = 0;
  for (int step = 0; next < 32 || h.core->has_work(); ++step) {
    ASSERT_LT(step, 100000);
    if (next < 32 && step % 3 == 0) {
      h.Add("r" + std::to_string(next), reqs[static_cast<size_t>(next)].prompt,
            reqs[static_cast<size_t>(next)].sp);
      ++next;
    }
    h.Step();
  }
  int stopped_by_eos = 0;
  for (int i = 0; i < 32; ++i) {
    const auto& c = h.results["r" + std::to_string(i)];
    EXPECT_EQ(c.ids, RunAlone(reqs[static_cast<size_t>(i)].prompt, reqs[static_cast<size_t>(i)].sp))
        << "request " << i;
    if (c.final_output.stop_token_id == 3) ++stopped_by_eos;
  }
  EXPECT_GT(stopped_by_eos, 0);  // the EOS path was exercised too
  ExpectDrained(h);
}

TEST(EngineCoreTest, PrefixReuseReportsFullBlocksAndMatchesColdRun) {
  std::mt19937 rng(7);
  const auto prefix = RandomTokens(&rng, 100, 64);
  auto a = prefix, b = prefix;
  auto ta = RandomTokens(&rng, 20, 64), tb = RandomTokens(&rng, 30, 64);
  a.insert(a.end(), ta.begin(), ta.end());
  b.insert(b.end(), tb.begin(), tb.end());
  SamplingParams sp = CoreHarness::Greedy(24);
  sp.ignore_eos = true;
  CoreHarness h;
  h.Add("a", a, sp);
  h.RunUntilIdle();
  EXPECT_EQ(h.results["a"].final_output.usage.cached_tokens, 0);
  const int64_t before = h.backend.num_tokens_computed();
  h.Add("b", b, sp);
  h.RunUntilIdle();
  const auto& rb = h.results["b"];
  EXPECT_EQ(rb.final_output.usage.cached_tokens, 96);  // 6 full blocks of 16 of the shared 100
  EXPECT_EQ(rb.final_output.usage.prompt_tokens, 130);
  EXPECT_EQ(h.backend.num_tokens_computed() - before, 130 - 96 + 23);
  EXPECT_EQ(rb.ids, RunAlone(b, sp));
  const EngineMetrics m = h.core->metrics();
  EXPECT_EQ(m.prefix_cache_queries, 120 + 130);
  EXPECT_EQ(m.prefix_cache_hits, 96);
  // The same prompt again: everything but the last (partial) block... and never the last token.
  h.Add("a2", a, sp);
  h.RunUntilIdle();
  EXPECT_EQ(h.results["a2"].final_output.usage.cached_tokens, 112);
  EXPECT_EQ(h.results["a2"].ids, h.results["a"].ids);
  // A prompt of exactly 7 blocks reuses 6 (the last token's logits must be computed).
  std::vector<int32_t> c(a.begin(), a.begin() + 112);
  h.Add("c", c, sp);
  h.RunUntilIdle();
  EXPECT_EQ(h.results["c"].final_output.usage.cached_tokens, 96);
  EXPECT_EQ(h.results["c"].ids, RunAlone(c, sp));
  // A different cache_salt shares nothing.
  h.Add("salted", b, sp, RequestKind::kGenerate, false, "tenant-b");
  h.RunUntilIdle();
  EXPECT_EQ(h.results["salted"].final_output.usage.cached_tokens, 0);
  EXPECT_EQ(h.results["salted"].ids, rb.ids);
  ExpectDrained(h);
}

// Submits n requests that cannot all hold their KV at once; each must still produce its solo
// output, through preemption (resumed from the prefix cache or recomputed).
void ExpectPreemptionKeepsOutputs(const CoreHarnessOptions& o, int n, int base_len, int len_step,
                                  int max_tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  CoreHarness h(o);
  std::vector<std::vector<int32_t>> prompts;
  SamplingParams sp = CoreHarness::Greedy(max_tokens);
  sp.ignore_eos = true;
  for (int i = 0; i < n; ++i) {
    prompts.push_back(RandomTokens(&rng, base_len + len_step * i, 64));
    h.Add("p" + std::to_string(i), prompts.back(), sp);
  }
  h.RunUntilIdle();
  for (int i = 0; i < n; ++i) {
    const auto& c = h.results["p" + std::to_string(i)];
    EXPECT_EQ(c.ids.size(), static_cast<size_t>(max_tokens));
    EXPECT_EQ(c.ids, RunAlone(prompts[static_cast<size_t>(i)], sp)) << "request " << i;
  }
  EXPECT_GT(h.core->metrics().num_preemptions, 0);
  ExpectDrained(h);
}

TEST(EngineCoreTest, PoolTooSmallForAllRequestsPreemptsAndStillMatches) {
  CoreHarnessOptions o;
  o.num_blocks = 14;  // 224 token slots; each request needs up to 7 blocks
  o.max_model_len = 14 * 16;
  ExpectPreemptionKeepsOutputs(o, 8, 20, 5, 60, 3);
}

TEST(EngineCoreTest, PreemptionWithoutPrefixCachingRecomputes) {
  CoreHarnessOptions o;
  o.num_blocks = 10;
  o.max_model_len = 160;
  o.prefix_caching = false;
  o.max_num_batched_tokens = 32;
  ExpectPreemptionKeepsOutputs(o, 6, 30, 7, 50, 5);
}

TEST(EngineCoreTest, AbortFreesBlocksAlsoMidPrefill) {
  std::mt19937 rng(9);
  CoreHarnessOptions o;
  o.max_num_batched_tokens = 64;
  CoreHarness h(o);
  h.Add("long", RandomTokens(&rng, 500, 64), CoreHarness::Greedy(10));
  h.Add("dec", RandomTokens(&rng, 10, 64), CoreHarness::Greedy(100));
  h.Step();
  h.Step();
  // "long" is mid-prefill (128 of 500 tokens computed), "dec" waits or runs.
  ASSERT_GT(h.core->kv_cache().pool().num_used_blocks(), 0);
  EXPECT_TRUE(h.Abort("long"));
  EXPECT_EQ(h.results["long"].num_finals, 1);
  EXPECT_EQ(h.results["long"].final_output.finish_reason, FinishReason::kAbort);
  EXPECT_EQ(h.results["long"].final_output.error.code(), StatusCode::kAborted);
  EXPECT_TRUE(h.core->CheckInvariants().ok());
  for (int i = 0; i < 5; ++i) h.Step();
  EXPECT_TRUE(h.Abort("dec"));   // running decode
  EXPECT_FALSE(h.Abort("dec"));  // already finished
  EXPECT_FALSE(h.Abort("unknown"));
  h.Add("waiting", RandomTokens(&rng, 10, 64));
  EXPECT_TRUE(h.Abort("waiting"));  // never scheduled
  EXPECT_EQ(h.results["waiting"].final_output.finish_reason, FinishReason::kAbort);
  ExpectDrained(h);
  EXPECT_EQ(h.core->kv_cache().pool().num_free_blocks(), 1024);
}

TEST(EngineCoreTest, ChunkedPrefillGivesTheSameLogitsAndHiddenStates) {
  std::mt19937 rng(11);
  const auto prompt = RandomTokens(&rng, 301, 64);
  SamplingParams score;
  score.max_tokens = 1;
  for (int v = 0; v < 64; ++v) score.chosen_logprob_token_ids.push_back(v);
  std::vector<TokenLogprob> scores[2];
  std::vector<float> hidden[2];
  for (int chunked = 0; chunked < 2; ++chunked) {
    CoreHarnessOptions o;
    o.max_num_batched_tokens = chunked ? 16 : 8192;
    o.prefix_caching = false;
    CoreHarness h(o);
    h.Add("s", prompt, score, RequestKind::kScore);
    h.Add("e", prompt, CoreHarness::Greedy(1), RequestKind::kEmbed, /*all_hidden=*/true);
    h.RunUntilIdle();
    EXPECT_EQ(h.backend.num_forward_calls(), chunked ? (602 + 15) / 16 : 1);
    scores[chunked] = h.results["s"].final_output.score_logprobs;
    hidden[chunked] = h.results["e"].final_output.hidden_states;
    EXPECT_EQ(h.results["e"].final_output.hidden_size, 8);
    ExpectDrained(h);
  }
  ASSERT_EQ(scores[0].size(), 64u);
  for (size_t i = 0; i < 64; ++i) EXPECT_EQ(scores[0][i].logprob, scores[1][i].logprob);
  ASSERT_EQ(hidden[0].size(), 301u * 8);
  EXPECT_EQ(hidden[0], hidden[1]);
}

TEST(EngineCoreTest, EmbedLastRowUsesPrefixCacheAndMatches) {
  std::mt19937 rng(12);
  const auto prompt = RandomTokens(&rng, 70, 64);
  CoreHarness h;
  h.Add("e1", prompt, CoreHarness::Greedy(1), RequestKind::kEmbed);
  h.RunUntilIdle();
  h.Add("e2", prompt, CoreHarness::Greedy(1), RequestKind::kEmbed);
  h.RunUntilIdle();
  EXPECT_EQ(h.results["e2"].final_output.usage.cached_tokens, 64);
  EXPECT_EQ(h.results["e1"].final_output.hidden_states.size(), 8u);
  EXPECT_EQ(h.results["e1"].final_output.hidden_states, h.results["e2"].final_output.hidden_states);
  EXPECT_TRUE(h.results["e1"].ids.empty());
  ExpectDrained(h);
}

TEST(EngineCoreTest, StopConditions) {
  std::mt19937 rng(13);
  // Find a prompt whose greedy continuation hits EOS (3) early.
  std::vector<int32_t> prompt;
  std::vector<int32_t> ids;
  SamplingParams sp = CoreHarness::Greedy(40);
  for (int attempt = 0; attempt < 500; ++attempt) {
    prompt = RandomTokens(&rng, 5, 64);
    ids = RunAlone(prompt, sp);
    if (ids.size() < 40 && ids.size() >= 3) break;
  }
  ASSERT_EQ(ids.back(), 3) << "no EOS-terminated prompt found";
  const size_t eos_at = ids.size() - 1;
  CoreHarness h;
  h.Add("eos", prompt, sp);
  SamplingParams ignore = sp;
  ignore.ignore_eos = true;
  h.Add("ignore", prompt, ignore);
  SamplingParams min = sp;
  min.min_tokens = static_cast<int>(eos_at) + 2;
  h.Add("min", prompt, min);
  SamplingParams stop = sp;
  stop.stop_token_ids = {ids[0]};
  h.Add("stopid", prompt, stop);
  h.Add("maxlen", prompt, CoreHarness::Greedy(2));
  h.RunUntilIdle();
  const auto& e = h.results["eos"];
  EXPECT_EQ(e.final_output.finish_reason, FinishReason::kStop);
  EXPECT_EQ(e.final_output.stop_token_id, 3);
  EXPECT_EQ(e.ids, ids);
  EXPECT_EQ(e.num_outputs, static_cast<int>(ids.size()));  // one output per token, final merged
  EXPECT_EQ(h.results["ignore"].ids.size(), 40u);
  EXPECT_EQ(h.results["ignore"].final_output.finish_reason, FinishReason::kLength);
  const auto& m = h.results["min"];
  ASSERT_GT(m.ids.size(), eos_at + 1);
  for (size_t i = 0; i + 1 < static_cast<size_t>(min.min_tokens) && i < m.ids.size(); ++i) {
    EXPECT_NE(m.ids[i], 3) << "EOS sampled below min_tokens at " << i;
  }
  EXPECT_EQ(h.results["stopid"].ids, std::vector<int32_t>{ids[0]});
  EXPECT_EQ(h.results["stopid"].final_output.stop_token_id, ids[0]);
  EXPECT_EQ(h.results["maxlen"].ids.size(), 2u);
  EXPECT_EQ(h.results["maxlen"].final_output.usage.completion_tokens, 2);
  ExpectDrained(h);

  // max_model_len ends generation with kLength.
  CoreHarnessOptions o;
  o.max_model_len = 8;
  CoreHarness h2(o);
  h2.Add("cap", prompt, ignore);
  h2.RunUntilIdle();
  EXPECT_EQ(h2.results["cap"].ids.size(), 3u);
  EXPECT_EQ(h2.results["cap"].final_output.finish_reason, FinishReason::kLength);
  ExpectDrained(h2);
}

TEST(EngineCoreTest, LogprobsAreReported) {
  CoreHarness h;
  SamplingParams sp = CoreHarness::Greedy(3);
  sp.logprobs = 2;
  sp.chosen_logprob_token_ids = {5, 6};
  h.Add("lp", {1, 2, 4}, sp);
  std::vector<EngineOutput> outs;
  while (h.core->has_work()) h.core->Step(&outs);
  ASSERT_EQ(outs.size(), 3u);
  for (const auto& o : outs) {
    ASSERT_EQ(o.output.logprobs.size(), 1u);
    const auto& lp = o.output.logprobs[0];
    EXPECT_EQ(lp.chosen.token_id, o.output.new_token_ids[0]);
    ASSERT_EQ(lp.top.size(), 2u);
    EXPECT_EQ(lp.top[0].token_id, lp.chosen.token_id);  // greedy = top-1
    EXPECT_LE(lp.top[1].logprob, lp.top[0].logprob);
    ASSERT_EQ(lp.requested.size(), 2u);
    EXPECT_EQ(lp.requested[1].token_id, 6);
  }
}

// Prompt logprobs equal what a score request on each prefix reports for the next prompt token,
// whatever cuts the prompt: one shot, chunks of 16 tokens, 20 logits rows per step, preemption in
// a small pool, a prompt already in the prefix cache; with max_tokens 0 (scoring) and 4.
TEST(EngineCoreTest, PromptLogprobsMatchScoresOfEachPrefix) {
  std::mt19937 rng(21);
  const int T = 70;
  const auto prompt = RandomTokens(&rng, T, 64);
  std::vector<float> want(T);
  {
    CoreHarness h;
    for (int q = 1; q < T; ++q) {
      SamplingParams sp;
      sp.max_tokens = 1;
      sp.chosen_logprob_token_ids = {prompt[static_cast<size_t>(q)]};
      h.Add("q" + std::to_string(q), std::vector<int32_t>(prompt.begin(), prompt.begin() + q), sp,
            RequestKind::kScore);
    }
    h.RunUntilIdle();
    for (int q = 1; q < T; ++q) {
      want[static_cast<size_t>(q)] =
          h.results["q" + std::to_string(q)].final_output.score_logprobs.at(0).logprob;
    }
  }
  struct Setup {
    const char* name;
    int batched_tokens, max_logits_rows;
    int64_t num_blocks;
    bool warm;
  };
  for (const Setup& s :
       {Setup{"one shot", 8192, 0, 1024, false}, Setup{"chunks", 16, 0, 1024, false},
        Setup{"rows", 8192, 20, 1024, false}, Setup{"preempt", 32, 0, 12, false},
        Setup{"warm prefix", 8192, 0, 1024, true}}) {
    for (int max_tokens : {0, 4}) {
      SCOPED_TRACE(std::string(s.name) + ", max_tokens " + std::to_string(max_tokens));
      CoreHarnessOptions o;
      o.max_num_batched_tokens = s.batched_tokens;
      o.max_num_seqs = 16;
      o.max_logits_rows = s.max_logits_rows;
      o.num_blocks = s.num_blocks;
      o.max_model_len = 12 * 16;
      CoreHarness h(o);
      if (s.warm) {
        h.Add("warm", prompt, CoreHarness::Greedy(1));
        h.RunUntilIdle();
      }
      for (int i = 0; i < 3; ++i) {
        h.Add("other" + std::to_string(i), RandomTokens(&rng, 40, 64), CoreHarness::Greedy(40));
      }
      SamplingParams sp = CoreHarness::Greedy(max_tokens);
      sp.prompt_logprobs = 2;
      h.Add("p", prompt, sp);
      h.Add("single", {prompt[0]}, sp);  // one token: no position has a logprob
      h.RunUntilIdle();
      const testing::Collected& c = h.results["p"];
      EXPECT_EQ(c.outputs_with_prompt_logprobs, 1);
      EXPECT_EQ(c.outputs_before_prompt_logprobs, 0);
      EXPECT_EQ(static_cast<int>(c.ids.size()), max_tokens);
      EXPECT_EQ(c.final_output.finish_reason, FinishReason::kLength);
      EXPECT_EQ(c.final_output.usage.cached_tokens, 0);
      ASSERT_EQ(c.prompt_logprobs.size(), static_cast<size_t>(T - 1));
      for (int q = 1; q < T; ++q) {
        const PositionLogprobs& p = c.prompt_logprobs[static_cast<size_t>(q - 1)];
        EXPECT_EQ(p.chosen.token_id, prompt[static_cast<size_t>(q)]) << q;
        EXPECT_EQ(p.chosen.logprob, want[static_cast<size_t>(q)]) << q;
        ASSERT_EQ(p.top.size(), 2u);
        EXPECT_GE(p.top[0].logprob, p.top[1].logprob);
        EXPECT_GE(p.top[0].logprob, p.chosen.logprob);
      }
      EXPECT_EQ(h.results["single"].outputs_with_prompt_logprobs, 0);
      EXPECT_EQ(static_cast<int>(h.results["single"].ids.size()), max_tokens);
      if (std::string(s.name) == "preempt") {
        EXPECT_GT(h.core->scheduler().num_preemptions(), 0);
      }
      ExpectDrained(h);
    }
  }
}

// Aborting a request while its prompt-logprob rows are in flight discards them: one final output,
// nothing held.
TEST(EngineCoreTest, AbortWithPromptLogprobRowsInFlight) {
  std::mt19937 rng(22);
  CoreHarnessOptions o;
  o.max_num_batched_tokens = 32;
  CoreHarness h(o);
  SamplingParams sp = CoreHarness::Greedy(0);
  sp.prompt_logprobs = 1;
  h.Add("p", RandomTokens(&rng, 200, 64), sp);
  h.Step();
  h.Step();
  EXPECT_TRUE(h.Abort("p"));
  h.RunUntilIdle();
  EXPECT_EQ(h.results["p"].final_output.finish_reason, FinishReason::kAbort);
  ExpectDrained(h);
}

TEST(EngineCoreTest, ForwardFailureFailsTheStepsRequestsAndFreesBlocks) {
  CoreHarness h;
  h.Add("a", {1, 2, 4, 5}, CoreHarness::Greedy(20));
  h.Add("b", {1, 2, 4, 6}, CoreHarness::Greedy(20));
  h.Step();
  h.Step();
  h.backend.FailForwardAfter(1);
  h.Step();
  for (const char* id : {"a", "b"}) {
    EXPECT_EQ(h.results[id].final_output.finish_reason, FinishReason::kError);
    EXPECT_EQ(h.results[id].final_output.error.code(), StatusCode::kInternal);
  }
  ExpectDrained(h);
}

class EvenTokensOnly final : public TokenConstraint {
 public:
  void FillNextTokenBitmask(uint32_t* bitmask) override {
    for (int w = 0; w < 2; ++w) bitmask[w] = 0x55555555u;
  }
  Status AcceptToken(int32_t token_id) override {
    if (token_id % 2 != 0) return Status::Internal("odd token accepted");
    ++accepted_;
    return Status::Ok();
  }
  bool IsTerminated() const override { return accepted_ == 5; }

 private:
  int accepted_ = 0;
};

TEST(EngineCoreTest, TokenConstraintMasksAndTerminates) {
  CoreHarness h;
  auto r = std::make_unique<RequestState>();
  r->request_id = "c";
  r->token_ids = {1, 2, 4, 5};
  r->sampling = CoreHarness::Greedy(50);
  r->sampling.ignore_eos = true;
  r->constraint = std::make_unique<EvenTokensOnly>();
  h.core->AddRequest(std::move(r));
  h.RunUntilIdle();
  const auto& c = h.results["c"];
  ASSERT_EQ(c.ids.size(), 5u);
  for (int32_t id : c.ids) EXPECT_EQ(id % 2, 0);
  EXPECT_EQ(c.final_output.finish_reason, FinishReason::kStop);
  ExpectDrained(h);
}

TEST(EngineCoreTest, NoChunkedPrefillSchedulesWholePrompts) {
  std::mt19937 rng(21);
  CoreHarnessOptions o;
  o.chunked = false;
  o.max_num_batched_tokens = 128;
  o.max_model_len = 128;
  CoreHarness h(o);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 6; ++i) {
    prompts.push_back(RandomTokens(&rng, 50 + 10 * i, 64));
    h.Add("n" + std::to_string(i), prompts.back(), CoreHarness::Greedy(8));
  }
  h.RunUntilIdle();
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(h.results["n" + std::to_string(i)].ids,
              RunAlone(prompts[static_cast<size_t>(i)], CoreHarness::Greedy(8), o));
  }
  ExpectDrained(h);
}

// Randomized: generate / embed / score requests arrive and get aborted at random over a small
// pool (preemption, chunking, prefix hits); invariants are checked after every step by the
// harness; every request ends with exactly one final output, and generated ids always equal the
// request's solo run.
TEST(EngineCoreTest, RandomizedSubmitAbortStressAgainstSoloRuns) {
  std::mt19937 rng(2024);
  CoreHarnessOptions o;
  o.num_blocks = 24;
  o.max_model_len = 24 * 16;
  o.max_num_batched_tokens = 48;
  o.max_num_seqs = 6;
  CoreHarness h(o);
  std::vector<std::vector<int32_t>> bases;
  for (int i = 0; i < 3; ++i) bases.push_back(RandomTokens(&rng, 120, 64));
  struct Sent {
    std::vector<int32_t> prompt;
    SamplingParams sp;
    RequestKind kind;
    bool aborted = false;
  };
  std::map<std::string, Sent> sent;
  int next = 0;
  for (int op = 0; op < 3000; ++op) {
    const int kind = static_cast<int>(rng() % 10);
    if (kind < 2) {
      Sent s;
      const auto& base = bases[rng() % bases.size()];
      s.prompt.assign(base.begin(), base.begin() + 1 + rng() % base.size());
      auto extra = RandomTokens(&rng, static_cast<int>(rng() % 30), 64);
      s.prompt.insert(s.prompt.end(), extra.begin(), extra.end());
      s.sp = CoreHarness::Greedy(1 + static_cast<int>(rng() % 40));
      s.kind = rng() % 6 == 0 ? RequestKind::kEmbed : RequestKind::kGenerate;
      if (rng() % 8 == 0) {
        s.kind = RequestKind::kScore;
        s.sp.chosen_logprob_token_ids = {1, 2, 3};
      }
      const std::string id = "q" + std::to_string(next++);
      h.Add(id, s.prompt, s.sp, s.kind, s.kind == RequestKind::kEmbed && rng() % 2 == 0);
      sent[id] = s;
    } else if (kind == 2 && next > 0) {
      const std::string id = "q" + std::to_string(rng() % next);
      if (h.Abort(id)) sent[id].aborted = true;
    } else {
      h.Step();
    }
  }
  h.RunUntilIdle();
  ExpectDrained(h);
  int checked = 0;
  for (const auto& [id, s] : sent) {
    const auto& c = h.results[id];
    ASSERT_EQ(c.num_finals, 1) << id;
    if (s.aborted) {
      EXPECT_EQ(c.final_output.finish_reason, FinishReason::kAbort);
    } else if (s.kind == RequestKind::kGenerate && checked < 60) {
      EXPECT_EQ(c.ids, RunAlone(s.prompt, s.sp)) << id;
      ++checked;
    }
  }
  EXPECT_GT(h.core->metrics().num_preemptions, 0);
  EXPECT_GT(h.core->metrics().prefix_cache_hits, 0);
}

class OnlyEosAfterTwo final : public TokenConstraint {
 public:
  void FillNextTokenBitmask(uint32_t* bitmask) override {
    bitmask[0] = accepted_ < 2 ? 0xFFFFFFF0u : (1u << 3);  // ids >= 4, then only EOS (3)
    bitmask[1] = accepted_ < 2 ? 0xFFFFFFFFu : 0u;
  }
  Status AcceptToken(int32_t) override {
    ++accepted_;
    return Status::Ok();
  }
  bool IsTerminated() const override { return accepted_ > 2; }

 private:
  int accepted_ = 0;
};

// Regression guard: min_tokens must not ban the only token a grammar allows (that would mask
// every token and fail the whole batch).
TEST(EngineCoreTest, GrammarThatOnlyAllowsEosOverridesMinTokens) {
  CoreHarness h;
  auto r = std::make_unique<RequestState>();
  r->request_id = "g";
  r->token_ids = {1, 2, 4, 5};
  r->sampling = CoreHarness::Greedy(20);
  r->sampling.min_tokens = 10;
  r->constraint = std::make_unique<OnlyEosAfterTwo>();
  h.core->AddRequest(std::move(r));
  h.Add("other", {1, 2, 4, 6}, CoreHarness::Greedy(8));
  h.RunUntilIdle();
  ASSERT_EQ(h.results["g"].ids.size(), 3u);
  EXPECT_EQ(h.results["g"].ids[2], 3);
  EXPECT_EQ(h.results["g"].final_output.finish_reason, FinishReason::kStop);
  EXPECT_EQ(h.results["other"].final_output.finish_reason, FinishReason::kLength);
  ExpectDrained(h);
}

}  // namespace
}  // namespace kiln
