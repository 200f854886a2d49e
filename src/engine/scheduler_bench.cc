// Host cost of one engine step without a model: 256 running requests with 2,000-token contexts
// (block_size 16, prefix caching on), all decoding. Measures
//   BM_ScheduleAndBuild: Scheduler::Schedule (incl. KV slot allocation) + ModelRunner::Build
//                        (ForwardBatch) + SamplingRow build + the bookkeeping update (computed
//                        tokens, caching of completed blocks, token append);
//   BM_EngineCoreStep:   the full EngineCore::Step over a backend whose Forward/Sample do nothing
//                        (adds stop checks and one RequestOutput per request).
// Goal (issue 4): <= 100 us per step on the build machine.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "engine/engine_core.h"
#include "engine/model_runner.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"

namespace kiln {
namespace {

constexpr int kNumRequests = 256;
constexpr int kContext = 2000;
constexpr int kBlockSize = 16;
constexpr int kMaxSteps = 200;  // timed steps: contexts grow from ~2,000 to ~2,300 tokens
constexpr int64_t kNumBlocks = kNumRequests * ((kContext + kMaxSteps * 4) / kBlockSize + 2);

double Min(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

std::vector<int32_t> RandomPrompt(std::mt19937* rng) {
  std::vector<int32_t> p(kContext);
  for (auto& v : p) v = static_cast<int32_t>((*rng)() % 32000);
  return p;
}

void BM_ScheduleAndBuild(benchmark::State& state) {
  KvCacheManager kv(
      {.block_size = kBlockSize, .num_blocks = kNumBlocks, .enable_prefix_caching = true});
  Scheduler sched({.max_num_seqs = kNumRequests,
                   .max_num_batched_tokens = 8192,
                   .enable_chunked_prefill = true},
                  &kv);
  ModelRunner runner(kBlockSize);
  std::mt19937 rng(1);
  std::vector<std::unique_ptr<RequestState>> reqs;
  for (int i = 0; i < kNumRequests; ++i) {
    auto r = std::make_unique<RequestState>();
    r->request_id = "r" + std::to_string(i);
    r->token_ids = RandomPrompt(&rng);
    r->num_prompt_tokens = kContext;
    r->sampling.temperature = 0.0f;
    r->sampling.max_tokens = 1 << 20;
    sched.AddRequest(r.get());
    reqs.push_back(std::move(r));
  }
  std::vector<SamplingRow> rows;
  rows.reserve(kNumRequests);
  int32_t next_token = 7;
  auto step = [&] {
    const SchedulerOutput& out = sched.Schedule();
    runner.Build(out);
    rows.clear();
    for (size_t i = 0; i < out.scheduled.size(); ++i) {
      if (runner.rows()[i].logits_row < 0) continue;
      rows.emplace_back();
      BuildSamplingRow(*out.scheduled[i].request, &rows.back());
    }
    for (const ScheduledRequest& s : out.scheduled) {
      RequestState* r = s.request;
      r->num_computed_tokens += s.num_tokens;
      kv.CacheComputedBlocks(&r->kv, r->token_ids, r->num_computed_tokens);
      if (r->num_computed_tokens == r->num_tokens()) r->token_ids.push_back(next_token++ % 32000);
    }
    benchmark::DoNotOptimize(runner.batch().slot_mapping.data());
    return out.scheduled.size();
  };
  // Prefill everything (8192 tokens per step), then run a few decode steps to warm the vectors.
  while (sched.running().size() < kNumRequests || reqs.back()->num_computed_tokens < kContext) {
    step();
  }
  for (int i = 0; i < 16; ++i) step();
  int steps = 0;
  for (auto _ : state) {
    if (step() != kNumRequests) state.SkipWithError("not all requests decoding");
    if (++steps > kMaxSteps) state.SkipWithError("benchmark ran past its context budget");
  }
  state.counters["requests"] = kNumRequests;
  state.counters["batch_tokens"] = static_cast<double>(runner.batch().num_tokens());
  state.counters["max_blocks_per_seq"] = runner.batch().max_blocks_per_seq;
}
BENCHMARK(BM_ScheduleAndBuild)
    ->Iterations(kMaxSteps)
    ->Unit(benchmark::kMicrosecond)
    ->Repetitions(10)
    ->ComputeStatistics("min", Min)
    ->ReportAggregatesOnly(true);

// A backend that does nothing: Forward succeeds, Sample returns token 7 for every row.
class NullBackend final : public Backend {
 public:
  NullBackend() {
    config_.vocab_size = 32000;
    config_.hidden_size = 8;
    config_.max_position_embeddings = 1 << 20;
  }
  const ModelConfig& config() const override { return config_; }
  int block_size() const override { return kBlockSize; }
  int64_t num_kv_blocks() const override { return kNumBlocks; }
  Status Forward(const ForwardBatch&) override { return Status::Ok(); }
  Status SampleAsync(std::span<const SamplingRow> rows) override {
    num_rows_ = rows.size();
    return Status::Ok();
  }
  bool SampleReady() override { return true; }
  Status WaitSample(std::vector<SampleResult>* results) override {
    results->assign(num_rows_, SampleResult{});
    for (auto& r : *results) r.token_id = 7;
    return Status::Ok();
  }
  Status GetLogits(std::vector<float>*) override { return Status::Ok(); }
  Status GetHidden(std::vector<float>*) override { return Status::Ok(); }

 private:
  ModelConfig config_;
  size_t num_rows_ = 0;
};

void BM_EngineCoreStep(benchmark::State& state) {
  NullBackend backend;
  EngineCoreConfig c;
  c.scheduler = {
      .max_num_seqs = kNumRequests, .max_num_batched_tokens = 8192, .enable_chunked_prefill = true};
  c.cache = {.block_size = kBlockSize, .num_blocks = kNumBlocks, .enable_prefix_caching = true};
  c.max_model_len = 1 << 20;
  c.vocab_size = 32000;
  c.hidden_size = 8;
  c.eos_token_ids = {2};
  EngineCore core(c, &backend);
  std::mt19937 rng(1);
  for (int i = 0; i < kNumRequests; ++i) {
    auto r = std::make_unique<RequestState>();
    r->request_id = "r" + std::to_string(i);
    r->token_ids = RandomPrompt(&rng);
    r->sampling.temperature = 0.0f;
    r->sampling.max_tokens = 1 << 20;
    core.AddRequest(std::move(r));
  }
  std::vector<EngineOutput> outputs;
  outputs.reserve(kNumRequests);
  while (core.scheduler().num_running() < kNumRequests ||
         core.model_runner().batch().num_tokens() != kNumRequests) {
    core.Step(&outputs);
    outputs.clear();
  }
  int steps = 0;
  for (auto _ : state) {
    core.Step(&outputs);
    if (outputs.size() != kNumRequests) state.SkipWithError("not all requests decoding");
    outputs.clear();
    if (++steps > kMaxSteps) state.SkipWithError("benchmark ran past its context budget");
  }
  state.counters["requests"] = kNumRequests;
}
BENCHMARK(BM_EngineCoreStep)
    ->Iterations(kMaxSteps)
    ->Unit(benchmark::kMicrosecond)
    ->Repetitions(10)
    ->ComputeStatistics("min", Min)
    ->ReportAggregatesOnly(true);

}  // namespace
}  // namespace kiln

BENCHMARK_MAIN();
