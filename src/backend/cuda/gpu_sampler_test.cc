// GpuSampler (kernels/sampling.h) against the reference sampler cpu::SampleLogitsRow on random
// logits: greedy, temperature with top-k / top-p / min-p, penalties, bitmask, bans, logprobs, at a
// small and at Qwen's vocabulary size. Skips without a CUDA device.
#include "backend/cuda/gpu_sampler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "backend/cpu/cpu_sampler.h"
#include "backend/cuda/cuda_backend.h"

namespace kiln::cuda {
namespace {

struct RowData {
  std::vector<int32_t> prompt, output, requested, banned;
  std::vector<uint32_t> mask;
};

// A mix of every feature; row r gets a deterministic configuration.
SamplingRow MakeRow(int r, int vocab, std::mt19937* rng, RowData* d) {
  SamplingRow row;
  const int kind = r % 8;
  row.seed = 1000 + r;
  row.step = r * 3;
  std::uniform_int_distribution<int> id(0, vocab - 1);
  if (kind != 0) row.temperature = 0.3f + 0.2f * (r % 5);
  if (kind == 2 || kind == 7) row.top_k = 1 + r % 40;
  if (kind == 3 || kind == 7) row.top_p = 0.5f + 0.05f * (r % 8);
  if (kind == 4) row.min_p = 0.05f * (1 + r % 4);
  if (kind == 5 || r % 3 == 0) {
    row.repetition_penalty = 1.3f;
    row.presence_penalty = 0.4f;
    row.frequency_penalty = 0.2f;
    for (int i = 0; i < 30; ++i) d->prompt.push_back(id(*rng));
    for (int i = 0; i < 12; ++i) d->output.push_back(d->prompt[i % 5]);
    for (int i = 0; i < 6; ++i) d->output.push_back(id(*rng));
    row.prompt_token_ids = d->prompt;
    row.output_token_ids = d->output;
  }
  if (kind == 6 || r % 4 == 1) {
    d->mask.assign(static_cast<size_t>((vocab + 31) / 32), 0u);
    for (int i = 0; i < vocab; ++i) {
      if ((*rng)() % 3 != 0) d->mask[i / 32] |= 1u << (i % 32);
    }
    row.allowed_token_bitmask = d->mask.data();
  }
  if (r % 5 == 2) {
    for (int i = 0; i < 4; ++i) d->banned.push_back(id(*rng));
    row.banned_token_ids = d->banned;
  }
  if (r % 2 == 0) {
    row.num_top_logprobs = r % 6;
    for (int i = 0; i < 3; ++i) d->requested.push_back(id(*rng));
    row.requested_token_ids = d->requested;
  }
  return row;
}

// Logits copied to the device for the duration of a test.
struct DeviceLogits {
  float* ptr = nullptr;
  explicit DeviceLogits(const std::vector<float>& host) {
    EXPECT_EQ(cudaMalloc(&ptr, host.size() * 4), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), host.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceLogits() { cudaFree(ptr); }
};

std::vector<float> RandomLogits(size_t n, float scale, uint32_t seed, bool round_logits) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> logits(n);
  for (float& x : logits) x = round_logits ? std::round(normal(rng)) : normal(rng);
  return logits;
}

void CheckParity(int vocab, int num_rows, float logit_scale, bool round_logits = false) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(vocab + num_rows);
  const std::vector<float> logits = RandomLogits(static_cast<size_t>(num_rows) * vocab, logit_scale,
                                                 rng(), round_logits);
  std::vector<RowData> data(static_cast<size_t>(num_rows));
  std::vector<SamplingRow> rows;
  for (int r = 0; r < num_rows; ++r) rows.push_back(MakeRow(r, vocab, &rng, &data[r]));

  DeviceLogits d_logits(logits);
  GpuSampler sampler;
  ASSERT_TRUE(sampler.Init(num_rows, vocab).ok());
  std::vector<SampleResult> gpu;
  const Status st = sampler.Sample(d_logits.ptr, rows, &gpu, nullptr);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(gpu.size(), rows.size());
  int mismatches = 0;
  for (int r = 0; r < num_rows; ++r) {
    SampleResult cpu;
    ASSERT_TRUE(cpu::SampleLogitsRow(std::span<const float>(logits.data() + static_cast<size_t>(r) * vocab, vocab),
                                     rows[r], &cpu)
                    .ok());
    const SampleResult& g = gpu[r];
    if (g.token_id != cpu.token_id) {
      ++mismatches;
      ADD_FAILURE() << "row " << r << ": gpu " << g.token_id << " cpu " << cpu.token_id
                    << " (temperature " << rows[r].temperature << ")";
    }
    if (rows[r].num_top_logprobs < 0) continue;
    EXPECT_NEAR(g.logprob, cpu.logprob, 1e-4 * std::max(1.0f, std::fabs(cpu.logprob))) << r;
    ASSERT_EQ(g.top.size(), cpu.top.size()) << r;
    for (size_t i = 0; i < g.top.size(); ++i) {
      EXPECT_EQ(g.top[i].token_id, cpu.top[i].token_id) << r;
      EXPECT_NEAR(g.top[i].logprob, cpu.top[i].logprob, 1e-4 * std::max(1.0f, std::fabs(cpu.top[i].logprob)));
    }
    ASSERT_EQ(g.requested.size(), cpu.requested.size()) << r;
    for (size_t i = 0; i < g.requested.size(); ++i) {
      EXPECT_EQ(g.requested[i].token_id, cpu.requested[i].token_id);
      EXPECT_NEAR(g.requested[i].logprob, cpu.requested[i].logprob,
                  1e-4 * std::max(1.0f, std::fabs(cpu.requested[i].logprob)));
    }
  }
  EXPECT_EQ(mismatches, 0);

}

TEST(GpuSamplerTest, MatchesCpuSamplerSmallVocab) { CheckParity(1000, 96, 3.0f); }
// Qwen's vocabulary, nearly flat logits (like dummy weights): top-p keeps most of the vocabulary.
TEST(GpuSamplerTest, MatchesCpuSamplerQwenVocabFlat) { CheckParity(151936, 24, 0.05f); }
TEST(GpuSamplerTest, MatchesCpuSamplerQwenVocabPeaked) { CheckParity(151936, 24, 4.0f); }
// Integer logits: thousands of exactly equal probabilities, so cuts and draws land inside ties.
TEST(GpuSamplerTest, MatchesCpuSamplerQwenVocabTies) { CheckParity(151936, 48, 2.0f, true); }

// Time of one Sample() over 64 Qwen-vocabulary rows, greedy vs temperature 0.7 / top_p 0.9, to
// show that random rows cost about as much as greedy ones (no vocabulary sort). Prints a [perf]
// line; asserts only that both succeed and agree with the CPU sampler on the first row.
TEST(GpuSamplerTest, RandomRowsCostLikeGreedyRows) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  const int vocab = 151936, num_rows = 64;
  const std::vector<float> logits =
      RandomLogits(static_cast<size_t>(num_rows) * vocab, 2.0f, 11, false);
  DeviceLogits d_logits(logits);
  GpuSampler sampler;
  ASSERT_TRUE(sampler.Init(num_rows, vocab).ok());
  double ms[3] = {0, 0, 0};
  for (int mode = 0; mode < 3; ++mode) {  // 64 greedy, 64 random, 1 greedy (batch-1 decode)
    std::vector<SamplingRow> rows(mode == 2 ? 1 : num_rows);
    for (size_t r = 0; r < rows.size(); ++r) {
      rows[r].seed = 5 + r;
      if (mode == 1) {
        rows[r].temperature = 0.7f;
        rows[r].top_p = 0.9f;
      }
    }
    std::vector<SampleResult> out;
    ASSERT_TRUE(sampler.Sample(d_logits.ptr, rows, &out, nullptr).ok());  // warm-up
    const int iters = 20;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) ASSERT_TRUE(sampler.Sample(d_logits.ptr, rows, &out, nullptr).ok());
    ms[mode] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
    SampleResult cpu;
    ASSERT_TRUE(cpu::SampleLogitsRow(std::span<const float>(logits.data(), vocab), rows[0], &cpu).ok());
    EXPECT_EQ(out[0].token_id, cpu.token_id);
  }
  std::printf("[perf] GpuSampler 64 x %d rows: greedy %.3f ms, temperature 0.7 + top_p 0.9 %.3f ms; "
              "1 row greedy %.3f ms\n", vocab, ms[0], ms[1], ms[2]);

}

TEST(GpuSamplerTest, EveryTokenMaskedIsAnError) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  const int vocab = 64;
  std::vector<float> logits(vocab, 0.5f);
  DeviceLogits d_logits(logits);
  GpuSampler sampler;
  ASSERT_TRUE(sampler.Init(4, vocab).ok());
  std::vector<uint32_t> mask(2, 0u);
  for (float temperature : {0.0f, 1.0f}) {
    SamplingRow row;
    row.temperature = temperature;
    row.allowed_token_bitmask = mask.data();
    std::vector<SampleResult> out;
    const Status st = sampler.Sample(d_logits.ptr, std::span<const SamplingRow>(&row, 1), &out, nullptr);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  }
  SamplingRow bad;
  std::vector<int32_t> ids = {vocab};
  bad.banned_token_ids = ids;
  std::vector<SampleResult> out;
  EXPECT_EQ(sampler.Sample(d_logits.ptr, std::span<const SamplingRow>(&bad, 1), &out, nullptr).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::cuda
