// Test helpers shared by the backends' tests (test-only).
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <vector>

#include "backend/backend.h"
#include "model/test_data.h"

namespace kiln::testing {

// Greedy decoding of one sequence (blocks 0, 1, 2, ...) pipelined like the engine's async
// scheduling: step n+1 is issued with its token deferred to step n's sample
// (ForwardBatch::deferred_tokens) before WaitSample(n). Returns `steps` generated ids.
inline std::vector<int32_t> PipelinedGreedy(Backend* backend, const std::vector<int32_t>& prompt,
                                            int steps, int block_size, int max_blocks) {
  std::vector<int32_t> out;
  SamplingRow row;  // greedy
  std::vector<SampleResult> results;
  const std::span<const SamplingRow> rows(&row, 1);
  Status st = backend->Forward(SingleSequenceBatch(prompt, 0, block_size, max_blocks, false));
  if (st.ok()) st = backend->SampleAsync(rows);
  int pos = static_cast<int>(prompt.size());
  for (int s = 0; s < steps && st.ok(); ++s) {
    if (s + 1 < steps) {
      ForwardBatch next = SingleSequenceBatch({0}, pos++, block_size, max_blocks, false);
      next.deferred_tokens.push_back({0, 0});
      st = backend->Forward(next);
    }
    if (st.ok()) st = backend->WaitSample(&results);
    if (st.ok()) out.push_back(results[0].token_id);
    if (st.ok() && s + 1 < steps) st = backend->SampleAsync(rows);
  }
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

}  // namespace kiln::testing
