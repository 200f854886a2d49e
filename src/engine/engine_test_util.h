// Test helpers for engine tests: a harness that drives an EngineCore over a FakeBackend
// synchronously and collects each request's outputs. Test-only.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "engine/engine_core.h"
#include "engine/fake_backend.h"

namespace kiln::testing {

struct Collected {
  std::vector<int32_t> ids;
  int num_outputs = 0;
  int num_finals = 0;
  RequestOutput final_output;
  std::vector<PositionLogprobs> prompt_logprobs;
  int outputs_with_prompt_logprobs = 0;
  int outputs_before_prompt_logprobs = 0;  // outputs that came before them (should be 0)
};

// KILN_TEST_ASYNC_BACKEND=1 runs every harness with the FakeBackend in pipelined mode (samples
// never ready before WaitSample, as on a GPU): ctest runs engine_core_test both ways.
inline bool AsyncBackendByDefault() {
  const char* v = std::getenv("KILN_TEST_ASYNC_BACKEND");
  return v != nullptr && std::string(v) == "1";
}

struct CoreHarnessOptions {
  int vocab_size = 64;
  int hidden_size = 8;
  int block_size = 16;
  int64_t num_blocks = 1024;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 8192;
  int max_model_len = 4096;
  bool chunked = true;
  bool prefix_caching = true;
  std::vector<int32_t> eos = {3};
  bool async_backend = AsyncBackendByDefault();
  bool async_scheduling = true;
  int64_t host_records = 0;  // host KV tier (0: off; lower tiers need it)
  std::string cache_namespace;
  int max_logits_rows = 0;  // 0: unbounded
  double fetch_timeout_s = 0.5;  // KvCacheOptions::fetch_timeout_s
};

class CoreHarness {
 public:
  explicit CoreHarness(const CoreHarnessOptions& o = {},
                       std::vector<std::unique_ptr<KvTier>> lower_tiers = {})
      : backend(o.vocab_size, o.hidden_size, o.block_size, o.num_blocks, o.eos) {
    EngineCoreConfig c;
    c.scheduler.max_num_seqs = o.max_num_seqs;
    c.scheduler.max_num_batched_tokens = o.max_num_batched_tokens;
    c.scheduler.enable_chunked_prefill = o.chunked;
    c.scheduler.max_logits_rows = o.max_logits_rows;
    c.cache.block_size = o.block_size;
    c.cache.num_blocks = o.num_blocks;
    c.cache.enable_prefix_caching = o.prefix_caching;
    c.max_model_len = o.max_model_len;
    c.vocab_size = o.vocab_size;
    c.hidden_size = o.hidden_size;
    c.eos_token_ids = o.eos;
    c.check_invariants_every_step = true;
    c.async_scheduling = o.async_scheduling;
    c.host_tier_records = o.host_records;
    c.cache.cache_namespace = o.cache_namespace;
    c.cache.fetch_timeout_s = o.fetch_timeout_s;
    if (o.host_records > 0) KILN_CHECK_OK(backend.AllocateHostKvPool(o.host_records));
    backend.set_async(o.async_backend);
    core = std::make_unique<EngineCore>(c, &backend, std::move(lower_tiers));
  }

  void Add(const std::string& id, std::vector<int32_t> prompt, SamplingParams sp = Greedy(16),
           RequestKind kind = RequestKind::kGenerate, bool all_hidden = false,
           std::string salt = "", int priority = 0) {
    auto r = std::make_unique<RequestState>();
    r->priority = priority;
    r->request_id = id;
    r->token_ids = std::move(prompt);
    r->kind = kind;
    r->return_all_hidden = all_hidden;
    r->seed = sp.seed.value_or(7);
    r->sampling = std::move(sp);
    r->kv.extra_keys = std::move(salt);
    r->arrival_time = std::chrono::steady_clock::now();
    core->AddRequest(std::move(r));
  }

  void Collect(std::vector<EngineOutput>& outs) {
    for (EngineOutput& o : outs) {
      Collected& c = results[o.output.request_id];
      if (!o.output.prompt_logprobs.empty()) {
        if (c.outputs_with_prompt_logprobs++ == 0) c.outputs_before_prompt_logprobs = c.num_outputs;
        c.prompt_logprobs = o.output.prompt_logprobs;
      }
      ++c.num_outputs;
      c.ids.insert(c.ids.end(), o.output.new_token_ids.begin(), o.output.new_token_ids.end());
      if (o.output.finished) {
        ++c.num_finals;
        c.final_output = o.output;
      }
    }
    outs.clear();
  }

  void Step() {
    std::vector<EngineOutput> outs;
    core->Step(&outs);
    Collect(outs);
  }

  // Steps until idle (bounded, so a livelock fails instead of hanging).
  void RunUntilIdle(int max_steps = 100000) {
    int steps = 0;
    while (core->has_work()) {
      ASSERT_LT(steps++, max_steps) << "engine did not drain";
      Step();
    }
  }

  bool Abort(const std::string& id) {
    std::vector<EngineOutput> outs;
    const bool found = core->AbortRequest(id, &outs);
    Collect(outs);
    return found;
  }

  static SamplingParams Greedy(int max_tokens) {
    SamplingParams sp;
    sp.temperature = 0.0f;
    sp.max_tokens = max_tokens;
    return sp;
  }

  FakeBackend backend;
  std::unique_ptr<EngineCore> core;
  std::map<std::string, Collected> results;
};

// The core is idle, holds no request and no block, its invariants hold, and every request got
// exactly one final output.
inline void ExpectDrained(CoreHarness& h) {
  EXPECT_FALSE(h.core->has_work());
  EXPECT_EQ(h.core->num_live_requests(), 0);
  EXPECT_EQ(h.core->kv_cache().pool().num_used_blocks(), 0);
  Status s = h.core->CheckInvariants();
  EXPECT_TRUE(s.ok()) << s.ToString();
  for (const auto& [id, c] : h.results) EXPECT_EQ(c.num_finals, 1) << id;
}

inline std::vector<int32_t> RandomTokens(std::mt19937* rng, int n, int vocab, int avoid = 3) {
  std::vector<int32_t> t;
  t.reserve(static_cast<size_t>(n));
  while (static_cast<int>(t.size()) < n) {
    const int32_t v = static_cast<int32_t>((*rng)() % static_cast<unsigned>(vocab));
    if (v != avoid) t.push_back(v);
  }
  return t;
}

}  // namespace kiln::testing
