// Scheduler + KV manager without a model: the token-budget policy and a randomized stress of
// thousands of submit / abort / finish sequences against the invariants.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>

namespace kiln {
namespace {

struct Sim {
  explicit Sim(SchedulerConfig sc, int block_size, int64_t num_blocks)
      : kv({.block_size = block_size, .num_blocks = num_blocks, .enable_prefix_caching = true}),
        sched(sc, &kv),
        config(sc) {}

  RequestState* Add(std::vector<int32_t> prompt, int max_tokens) {
    auto r = std::make_unique<RequestState>();
    r->request_id = std::to_string(next_id++);
    r->token_ids = std::move(prompt);
    r->num_prompt_tokens = r->num_tokens();
    r->sampling.max_tokens = max_tokens;
    RequestState* p = r.get();
    live.push_back(std::move(r));
    sched.AddRequest(p);
    return p;
  }

  void Remove(RequestState* r) {
    std::erase_if(live, [&](const std::unique_ptr<RequestState>& x) { return x.get() == r; });
  }

  // One step with simulated model: computed tokens advance, full blocks are cached, requests
  // that completed their tokens append one and finish at max_tokens.
  void Step(std::mt19937* rng) {
    std::vector<RequestState*> decodes_before;  // running with exactly one token to compute
    for (RequestState* r : sched.running()) {
      if (r->num_tokens_to_compute() == 1) decodes_before.push_back(r);
    }
    const SchedulerOutput& out = sched.Schedule();
    int total = 0;
    std::vector<RequestState*> seen;
    for (const ScheduledRequest& s : out.scheduled) {
      RequestState* r = s.request;
      ASSERT_GT(s.num_tokens, 0);
      ASSERT_EQ(r->status, RequestStatus::kRunning);
      ASSERT_LE(r->num_computed_tokens + s.num_tokens, r->num_tokens());
      ASSERT_GE(static_cast<int64_t>(r->kv.block_table.size()),
                kv.BlocksFor(r->num_computed_tokens + s.num_tokens));
      ASSERT_TRUE(std::find(seen.begin(), seen.end(), r) == seen.end()) << "scheduled twice";
      seen.push_back(r);
      if (!config.enable_chunked_prefill) ASSERT_EQ(s.num_tokens, r->num_tokens_to_compute());
      total += s.num_tokens;
    }
    ASSERT_EQ(total, out.num_scheduled_tokens);
    ASSERT_LE(total, config.max_num_batched_tokens);
    ASSERT_LE(sched.num_running(), config.max_num_seqs);
    // Decodes first: no prefill chunk precedes a decode in the batch.
    bool saw_chunk = false;
    for (const ScheduledRequest& s : out.scheduled) {
      const bool decode = std::find(decodes_before.begin(), decodes_before.end(), s.request) !=
                          decodes_before.end();
      if (!decode) saw_chunk = true;
      if (decode) ASSERT_FALSE(saw_chunk) << "a decode was scheduled after a prefill chunk";
    }
    for (const ScheduledRequest& s : out.scheduled) {
      RequestState* r = s.request;
      r->num_computed_tokens += s.num_tokens;
      kv.CacheComputedBlocks(&r->kv, r->token_ids, r->num_computed_tokens);
      if (r->num_computed_tokens == r->num_tokens()) {
        r->token_ids.push_back(static_cast<int32_t>((*rng)() % 50));
        if (r->num_output_tokens() >= r->sampling.max_tokens) {
          kv.Free(&r->kv);
          r->status = RequestStatus::kFinished;
          ++finished;
        }
      }
    }
    sched.RemoveFinished();
    std::erase_if(live, [](const std::unique_ptr<RequestState>& x) {
      return x->status == RequestStatus::kFinished;
    });
  }

  Status Check() const {
    std::vector<const KvSequence*> seqs;
    for (const auto& r : live) seqs.push_back(&r->kv);
    KILN_RETURN_IF_ERROR(kv.CheckInvariants(seqs));
    if (static_cast<size_t>(sched.num_running() + sched.num_waiting()) != live.size()) {
      return Status::Internal("queues and live requests disagree");
    }
    for (const RequestState* r : sched.waiting()) {
      if (!r->kv.block_table.empty()) return Status::Internal("waiting request holds blocks");
    }
    return Status::Ok();
  }

  KvCacheManager kv;
  Scheduler sched;
  SchedulerConfig config;
  std::vector<std::unique_ptr<RequestState>> live;
  int next_id = 0;
  int finished = 0;
};

TEST(SchedulerTest, DecodesComeBeforePrefillChunksAndBudgetIsRespected) {
  Sim sim({.max_num_seqs = 8, .max_num_batched_tokens = 20, .enable_chunked_prefill = true}, 4,
          100);
  std::mt19937 rng(1);
  RequestState* a = sim.Add(std::vector<int32_t>(10, 1), 50);
  sim.Step(&rng);  // a: 10-token prefill
  RequestState* b = sim.Add(std::vector<int32_t>(60, 2), 50);
  const SchedulerOutput& out = sim.sched.Schedule();
  ASSERT_EQ(out.scheduled.size(), 2u);
  EXPECT_EQ(out.scheduled[0].request, a);
  EXPECT_EQ(out.scheduled[0].num_tokens, 1);
  EXPECT_EQ(out.scheduled[1].request, b);
  EXPECT_EQ(out.scheduled[1].num_tokens, 19);  // chunk fills the rest of the budget
}

TEST(SchedulerTest, PreemptsNewestAndResumesFromCache) {
  Sim sim({.max_num_seqs = 8, .max_num_batched_tokens = 64, .enable_chunked_prefill = true}, 4, 6);
  std::mt19937 rng(2);
  // Each fits alone (9 + 12 tokens = 6 blocks), not together.
  RequestState* a = sim.Add(std::vector<int32_t>(9, 1), 12);
  RequestState* b = sim.Add(std::vector<int32_t>(9, 2), 12);
  sim.Step(&rng);  // both prefilled: 3 blocks each, pool full
  EXPECT_EQ(sim.sched.num_running(), 2);
  for (int i = 0; i < 4; ++i) sim.Step(&rng);  // a needs a 4th block at position 12 → b preempted
  EXPECT_GT(sim.sched.num_preemptions(), 0);
  EXPECT_EQ(b->status, RequestStatus::kWaiting);
  EXPECT_EQ(a->status, RequestStatus::kRunning);
  EXPECT_TRUE(sim.Check().ok());
  for (int i = 0; i < 500 && sim.sched.has_work(); ++i) sim.Step(&rng);
  EXPECT_FALSE(sim.sched.has_work());
  EXPECT_EQ(sim.finished, 2);
  EXPECT_TRUE(sim.Check().ok());
}

// Thousands of random submit / abort / step(finish) operations; invariants after each one; then
// everything drains (no deadlock, no livelock).
TEST(SchedulerTest, RandomizedStressKeepsInvariantsAndDrains) {
  for (int config = 0; config < 4; ++config) {
    std::mt19937 rng(100 + config);
    SchedulerConfig sc{.max_num_seqs = 4 + config * 3,
                       .max_num_batched_tokens = 32 + config * 40,
                       .enable_chunked_prefill = config != 2};
    const int bs = 4;
    const int64_t num_blocks = 40 + config * 10;
    const int max_len =
        sc.enable_chunked_prefill ? static_cast<int>(num_blocks * bs) : sc.max_num_batched_tokens;
    Sim sim(sc, bs, num_blocks);
    std::vector<std::vector<int32_t>> bases;
    for (int i = 0; i < 4; ++i) {
      std::vector<int32_t> b;
      for (int j = 0; j < 60; ++j) b.push_back(static_cast<int32_t>(rng() % 50));
      bases.push_back(b);
    }
    int aborted = 0;
    for (int op = 0; op < 3000; ++op) {
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 3) {
        const auto& base = bases[rng() % bases.size()];
        std::vector<int32_t> p(base.begin(), base.begin() + 1 + rng() % base.size());
        const int extra = static_cast<int>(rng() % 20);
        for (int i = 0; i < extra; ++i) p.push_back(static_cast<int32_t>(rng() % 50));
        const int room = max_len - static_cast<int>(p.size());
        if (room < 1) continue;
        sim.Add(std::move(p), 1 + static_cast<int>(rng() % std::min(room, 30)));
      } else if (kind == 3 && !sim.live.empty()) {
        RequestState* r = sim.live[rng() % sim.live.size()].get();
        sim.sched.RemoveRequest(r);
        sim.Remove(r);
        ++aborted;
      } else {
        sim.Step(&rng);
      }
      Status s = sim.Check();
      ASSERT_TRUE(s.ok()) << s.ToString() << " (config " << config << ", op " << op << ")";
    }
    for (int i = 0; i < 20000 && sim.sched.has_work(); ++i) {
      sim.Step(&rng);
      ASSERT_TRUE(sim.Check().ok());
    }
    EXPECT_FALSE(sim.sched.has_work()) << "did not drain (config " << config << ")";
    EXPECT_GT(sim.finished, 0);
    EXPECT_GT(aborted, 0);
    EXPECT_EQ(sim.kv.pool().num_used_blocks(), 0);
    EXPECT_GT(sim.kv.prefix_cache_hits(), 0);
  }
}

// Request::priority: the waiting queue admits lower values first, ties by arrival; a preempted
// request keeps its place by its own priority and arrival.
TEST(SchedulerTest, WaitingQueueHonoursPriorityThenArrival) {
  KvCacheManager kv({.block_size = 4, .num_blocks = 64, .enable_prefix_caching = true});
  SchedulerConfig sc;
  sc.max_num_seqs = 1;  // one seat: admissions show the queue order
  Scheduler sched(sc, &kv);
  std::vector<std::unique_ptr<RequestState>> rs;
  const std::vector<int> priorities = {5, 1, 5, 0, 1, -2};
  for (size_t i = 0; i < priorities.size(); ++i) {
    auto r = std::make_unique<RequestState>();
    r->request_id = std::to_string(i);
    r->token_ids = {1, 2, 3, static_cast<int32_t>(i)};
    r->num_prompt_tokens = 4;
    r->priority = priorities[i];
    sched.AddRequest(r.get());
    rs.push_back(std::move(r));
  }
  std::vector<std::string> order;
  for (size_t k = 0; k < priorities.size(); ++k) {
    const SchedulerOutput& out = sched.Schedule();
    ASSERT_EQ(out.scheduled.size(), 1u);
    RequestState* r = out.scheduled[0].request;
    order.push_back(r->request_id);
    r->num_computed_tokens += out.scheduled[0].num_tokens;
    kv.Free(&r->kv);
    r->status = RequestStatus::kFinished;
    sched.RemoveFinished();
  }
  EXPECT_EQ(order, (std::vector<std::string>{"5", "3", "1", "4", "0", "2"}));
  EXPECT_FALSE(sched.has_work());
}

}  // namespace
}  // namespace kiln
