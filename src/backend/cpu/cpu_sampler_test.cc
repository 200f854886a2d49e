#include "backend/cpu/cpu_sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>

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


// DrawFromProbs (radix selects, no sort) against the literal reading of the contract: sort by
// (p descending, id ascending), cut, sum masses as round(p * 2^31) integers, walk the prefix.
int32_t DrawBySorting(const std::vector<float>& probs, int top_k, float min_p, float top_p,
                      float u) {
  const int vocab = static_cast<int>(probs.size());
  auto fixed = [](float p) {
    return static_cast<uint64_t>(std::llrint(static_cast<double>(p) * 2147483648.0));
  };
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
  int n = vocab;
  if (top_k > 0 && top_k < n) n = top_k;
  if (min_p > 0.0f) {
    const float threshold = min_p * probs[order[0]];
    int count = 0;
    while (count < vocab && probs[order[count]] >= threshold) ++count;
    n = std::min(n, std::max(count, 1));
  }
  if (top_p < 1.0f) {
    uint64_t mass = 0;
    for (int i = 0; i < n; ++i) {
      mass += fixed(probs[order[i]]);
      if (static_cast<double>(mass) >= static_cast<double>(top_p) * 2147483648.0) {
        n = i + 1;
        break;
      }
    }
  }
  uint64_t total = 0;
  for (int i = 0; i < n; ++i) total += fixed(probs[order[i]]);
  const double target = static_cast<double>(u) * static_cast<double>(total);
  uint64_t running = 0;
  for (int i = 0; i < n; ++i) {
    running += fixed(probs[order[i]]);
    if (target < static_cast<double>(running)) return order[i];
  }
  return order[n - 1];
}

TEST(CpuSamplerTest, DrawFromProbsEqualsSortedInverseCdf) {
  std::mt19937 rng(7);
  int checked = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int vocab = trial % 3 == 0 ? 5 + trial % 17 : 2000 + trial * 37;
    std::vector<float> probs(static_cast<size_t>(vocab));
    std::normal_distribution<float> normal(0.0f, trial % 2 == 0 ? 0.05f : 3.0f);
    const int kind = trial % 5;
    for (int i = 0; i < vocab; ++i) {
      float logit = normal(rng);
      if (kind == 1) logit = std::round(logit);          // many exact ties
      if (kind == 2 && rng() % 3 == 0) logit = -INFINITY;  // zero probabilities (masked)
      if (kind == 3) logit = 0.0f;                       // flat: one value, all ties
      probs[i] = logit;
    }
    float m = -INFINITY;
    for (float x : probs) m = std::max(m, x);
    double z = 0.0;
    for (float& x : probs) {
      x = std::isinf(x) ? 0.0f : std::exp(x - m);
      z += x;
    }
    for (float& x : probs) x = static_cast<float>(x / z);
    const int top_k = trial % 4 == 1 ? 1 + static_cast<int>(rng() % 50) : 0;
    const float top_p = trial % 3 == 1 ? 0.05f + 0.9f * static_cast<float>(rng() % 100) / 100.0f : 1.0f;
    const float min_p = trial % 7 == 2 ? 0.01f * static_cast<float>(1 + rng() % 30) : 0.0f;
    for (int draw = 0; draw < 8; ++draw) {
      const float u = draw == 0 ? 0.0f : SamplingUniform(trial, draw);
      ASSERT_EQ(DrawFromProbs(probs, top_k, min_p, top_p, u),
                DrawBySorting(probs, top_k, min_p, top_p, u))
          << "trial " << trial << " vocab " << vocab << " top_k " << top_k << " top_p " << top_p
          << " min_p " << min_p << " u " << u;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2400);
}

}  // namespace
}  // namespace kiln::cpu
