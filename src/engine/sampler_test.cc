// Sampler glue: which ids a SamplingRow bans, by position.
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <vector>

namespace kiln {
namespace {

RequestState MakeRequest(int min_tokens, int num_outputs) {
  RequestState r;
  r.sampling.min_tokens = min_tokens;
  r.sampling.stop_token_ids = {7};
  r.token_ids = {1, 2, 3};
  r.num_prompt_tokens = 3;
  for (int i = 0; i < num_outputs; ++i) r.token_ids.push_back(4);
  return r;
}

std::vector<int32_t> Banned(const SamplingRow& row) {
  return {row.banned_token_ids.begin(), row.banned_token_ids.end()};
}

// Regression: logit rows past the tokenizer's vocabulary (Qwen2.5: 151,936 rows, 151,665 ids)
// must never be sampled, also after min_tokens.
TEST(SamplerTest, NeverSampleIdsAreBannedAtEveryPosition) {
  const std::vector<int32_t> eos = {2};
  const std::vector<int32_t> never = {10, 11};
  RequestState below = MakeRequest(/*min_tokens=*/2, /*num_outputs=*/1);
  InitStopIds(eos, never, &below);
  SamplingRow row;
  BuildSamplingRow(below, &row);
  EXPECT_EQ(Banned(row), (std::vector<int32_t>{2, 7, 10, 11}));

  RequestState above = MakeRequest(/*min_tokens=*/2, /*num_outputs=*/2);
  InitStopIds(eos, never, &above);
  BuildSamplingRow(above, &row);
  EXPECT_EQ(Banned(row), (std::vector<int32_t>{10, 11}));
}

TEST(SamplerTest, IgnoreEosKeepsEosSampleable) {
  RequestState r = MakeRequest(/*min_tokens=*/5, /*num_outputs=*/0);
  r.sampling.ignore_eos = true;
  InitStopIds(std::vector<int32_t>{2}, {}, &r);
  SamplingRow row;
  BuildSamplingRow(r, &row);
  EXPECT_EQ(Banned(row), (std::vector<int32_t>{7}));
}

}  // namespace
}  // namespace kiln
