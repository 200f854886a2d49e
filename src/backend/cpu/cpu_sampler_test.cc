#include "backend/cpu/cpu_sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace kiln::cpu {
namespace {

SampleResult MustSample(const std::vector<float>& logits, const SamplingRow& row) {
  SampleResult r;
  Status s = SampleLogitsRow(logits, row, &r);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return r;
}

TEST(CpuSamplerTest, GreedyPicksLowestIdOnTies) {
  SamplingRow row;
  EXPECT_EQ(MustSample({1, 3, 3, 2}, row).token_id, 1);
  EXPECT_EQ(MustSample({-5, -1, -2}, row).token_id, 1);
}

TEST(CpuSamplerTest, RawLogprobsTopAndRequested) {
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f, 2.0f};
  SamplingRow row;
  row.num_top_logprobs = 3;
  std::vector<int32_t> requested = {2, 0};
  row.requested_token_ids = requested;
  std::vector<int32_t> banned = {1};
  row.banned_token_ids = banned;  // does not change the reported (raw) logprobs
  const SampleResult r = MustSample(logits, row);
  const double lse = std::log(1 + 2 * std::exp(2.0) + std::exp(1.0));
  EXPECT_EQ(r.token_id, 3);
  EXPECT_NEAR(r.logprob, 2.0 - lse, 1e-6);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].token_id, 1);  // ties by lower id
  EXPECT_EQ(r.top[1].token_id, 3);
  EXPECT_EQ(r.top[2].token_id, 2);
  EXPECT_NEAR(r.top[2].logprob, 1.0 - lse, 1e-6);
  ASSERT_EQ(r.requested.size(), 2u);
  EXPECT_EQ(r.requested[1].token_id, 0);
  EXPECT_NEAR(r.requested[1].logprob, -lse, 1e-6);
}

TEST(CpuSamplerTest, BitmaskAndBans) {
  std::vector<float> logits = {5, 4, 3, 2, 1};
  SamplingRow row;
  const uint32_t mask = 0b11100;  // ids 2, 3, 4 allowed
  row.allowed_token_bitmask = &mask;
  EXPECT_EQ(MustSample(logits, row).token_id, 2);
  std::vector<int32_t> banned = {2, 3};
  row.banned_token_ids = banned;
  EXPECT_EQ(MustSample(logits, row).token_id, 4);
  banned.push_back(4);
  row.banned_token_ids = banned;
  SampleResult r;
  EXPECT_FALSE(SampleLogitsRow(logits, row, &r).ok());
  std::vector<int32_t> outside = {9};
  row.banned_token_ids = outside;
  EXPECT_FALSE(SampleLogitsRow(logits, row, &r).ok());
}

TEST(CpuSamplerTest, Penalties) {
  std::vector<float> logits = {2.0f, 1.9f, -1.0f, -1.05f};
  SamplingRow row;
  std::vector<int32_t> prompt = {0};
  row.prompt_token_ids = prompt;
  row.repetition_penalty = 1.1f;  // 2.0 / 1.1 = 1.818 < 1.9
  EXPECT_EQ(MustSample(logits, row).token_id, 1);
  // Negative logits are multiplied: -1.0 * 2 = -2 < -1.05.
  std::vector<float> neg = {-1.0f, -1.05f};
  row.repetition_penalty = 2.0f;
  EXPECT_EQ(MustSample(neg, row).token_id, 1);
  // Frequency and presence count only output ids.
  SamplingRow freq;
  std::vector<int32_t> output = {0, 0};
  freq.output_token_ids = output;
  freq.frequency_penalty = 0.06f;  // 2.0 - 0.12 = 1.88 < 1.9
  EXPECT_EQ(MustSample(logits, freq).token_id, 1);
  freq.frequency_penalty = 0.04f;  // 1.92 > 1.9
  EXPECT_EQ(MustSample(logits, freq).token_id, 0);
  freq.presence_penalty = 0.05f;  // 1.87
  EXPECT_EQ(MustSample(logits, freq).token_id, 1);
  SamplingRow prompt_only;
  prompt_only.prompt_token_ids = prompt;
  prompt_only.presence_penalty = 5.0f;  // the prompt does not count for presence
  EXPECT_EQ(MustSample(logits, prompt_only).token_id, 0);
}

TEST(CpuSamplerTest, SameSeedSameTokenAndDistribution) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingRow row;
  row.temperature = 1.0f;
  row.seed = 42;
  std::map<int, int> counts;
  const int n = 20000;
  for (int step = 0; step < n; ++step) {
    row.step = step;
    const int a = MustSample(logits, row).token_id;
    EXPECT_EQ(MustSample(logits, row).token_id, a);
    ++counts[a];
  }
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.015);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.015);
  EXPECT_NEAR(counts[2] / double(n), 0.2, 0.015);
  // Temperature 0.5 sharpens: p ∝ p^2 → 25/38, 9/38, 4/38.
  row.temperature = 0.5f;
  counts.clear();
  for (int step = 0; step < n; ++step) {
    row.step = step;
    ++counts[MustSample(logits, row).token_id];
  }
  EXPECT_NEAR(counts[0] / double(n), 25.0 / 38, 0.015);
  EXPECT_NEAR(counts[2] / double(n), 4.0 / 38, 0.015);
}

TEST(CpuSamplerTest, InverseCdfWithKnownUniform) {
  // Find steps whose uniform falls in known ranges and check the exact pick.
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingRow row;
  row.temperature = 1.0f;
  row.seed = 1;
  for (int step = 0; step < 200; ++step) {
    row.step = step;
    const float u = SamplingUniform(row.seed, step);
    const int want = u < 0.5f ? 0 : (u < 0.8f ? 1 : 2);
    if (std::fabs(u - 0.5f) < 1e-4 || std::fabs(u - 0.8f) < 1e-4) continue;
    EXPECT_EQ(MustSample(logits, row).token_id, want) << u;
  }
}

TEST(CpuSamplerTest, Filters) {
  // probs 0.4 0.3 0.2 0.1
  std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  auto support = [&](SamplingRow row) {
    std::map<int, int> seen;
    row.temperature = 1.0f;
    for (int step = 0; step < 2000; ++step) {
      row.step = step;
      ++seen[MustSample(logits, row).token_id];
    }
    std::vector<int> ids;
    for (auto& [id, c] : seen) ids.push_back(id);
    return ids;
  };
  SamplingRow top_k;
  top_k.top_k = 2;
  EXPECT_EQ(support(top_k), (std::vector<int>{0, 1}));
  SamplingRow top_p;
  top_p.top_p = 0.75f;  // 0.4 + 0.3 = 0.7 < 0.75 → needs id 2 too
  EXPECT_EQ(support(top_p), (std::vector<int>{0, 1, 2}));
  top_p.top_p = 0.65f;
  EXPECT_EQ(support(top_p), (std::vector<int>{0, 1}));
  top_p.top_p = 0.01f;  // always at least one token
  EXPECT_EQ(support(top_p), (std::vector<int>{0}));
  SamplingRow min_p;
  min_p.min_p = 0.6f;  // keep p >= 0.24
  EXPECT_EQ(support(min_p), (std::vector<int>{0, 1}));
  SamplingRow all;
  EXPECT_EQ(support(all), (std::vector<int>{0, 1, 2, 3}));
  // top_k after renormalization: with k = 2 the two survivors are drawn 4:3.
  SamplingRow k2;
  k2.top_k = 2;
  k2.temperature = 1.0f;
  int zeros = 0;
  for (int step = 0; step < 20000; ++step) {
    k2.step = step;
    zeros += MustSample(logits, k2).token_id == 0;
  }
  EXPECT_NEAR(zeros / 20000.0, 4.0 / 7, 0.015);
}

}  // namespace
}  // namespace kiln::cpu
