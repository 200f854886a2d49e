#include "backend/cpu/cpu_sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>
#include <vector>

namespace kiln::cpu {
namespace {

bool Before(const std::vector<float>& v, int32_t a, int32_t b) {
  return v[a] > v[b] || (v[a] == v[b] && a < b);
}

}  // namespace

Status SampleLogitsRow(std::span<const float> logits, const SamplingRow& row,
                       SampleResult* result) {
  const int vocab = static_cast<int>(logits.size());
  auto in_vocab = [&](int32_t id) { return id >= 0 && id < vocab; };
  *result = SampleResult();

  // 1. Raw log-softmax (only when logprobs are requested).
  std::vector<float> logprobs;
  if (row.num_top_logprobs >= 0) {
    float max_logit = -INFINITY;
    for (float x : logits) max_logit = std::max(max_logit, x);
    double sum = 0.0;
    for (float x : logits) sum += std::exp(static_cast<double>(x) - max_logit);
    const float lse = max_logit + static_cast<float>(std::log(sum));
    logprobs.resize(static_cast<size_t>(vocab));
    for (int i = 0; i < vocab; ++i) logprobs[i] = logits[i] - lse;
  }

  // 2. Processed logits: masks, then penalties.
  std::vector<float> x(logits.begin(), logits.end());
  for (int32_t id : row.banned_token_ids) {
    if (!in_vocab(id))
      return Status::InvalidArgument("banned token id " + std::to_string(id) +
                                     " outside vocabulary");
    x[id] = -INFINITY;
  }
  if (row.allowed_token_bitmask != nullptr) {
    for (int i = 0; i < vocab; ++i)
      if (((row.allowed_token_bitmask[i / 32] >> (i % 32)) & 1u) == 0) x[i] = -INFINITY;
  }
  const bool any_penalty = row.repetition_penalty != 1.0f || row.presence_penalty != 0.0f ||
                           row.frequency_penalty != 0.0f;
  if (any_penalty) {
    std::unordered_map<int32_t, int>
        output_counts;  // distinct ids of prompt ∪ output → count in output
    for (int32_t id : row.prompt_token_ids) {
      if (!in_vocab(id))
        return Status::InvalidArgument("prompt token id " + std::to_string(id) +
                                       " outside vocabulary");
      output_counts.emplace(id, 0);
    }
    for (int32_t id : row.output_token_ids) {
      if (!in_vocab(id))
        return Status::InvalidArgument("output token id " + std::to_string(id) +
                                       " outside vocabulary");
      ++output_counts[id];
    }
    for (const auto& [id, count] : output_counts) {
      float& v = x[id];
      if (row.repetition_penalty != 1.0f)
        v = v > 0.0f ? v / row.repetition_penalty : v * row.repetition_penalty;
      if (count > 0) v -= row.frequency_penalty * static_cast<float>(count) + row.presence_penalty;
    }
  }
  int32_t best = -1;
  for (int i = 0; i < vocab; ++i)
    if (x[i] > -INFINITY && (best < 0 || x[i] > x[best])) best = i;
  if (best < 0) return Status::InvalidArgument("every token is banned or masked");

  // 3. Greedy or random.
  if (row.temperature <= 0.0f) {
    result->token_id = best;
  } else {
    const float inv_t = 1.0f / row.temperature;
    const float max_scaled = x[best] * inv_t;
    std::vector<float> probs(static_cast<size_t>(vocab));
    double z = 0.0;
    for (int i = 0; i < vocab; ++i) {
      probs[i] = x[i] > -INFINITY ? std::exp(x[i] * inv_t - max_scaled) : 0.0f;
      z += probs[i];
    }
    for (float& p : probs) p = static_cast<float>(p / z);
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int32_t a, int32_t b) { return Before(probs, a, b); });
    int n = vocab;
    if (row.top_k > 0 && row.top_k < n) n = row.top_k;
    if (row.min_p > 0.0f) {
      const float threshold = row.min_p * probs[order[0]];
      int count = 0;
      while (count < vocab && probs[order[count]] >= threshold) ++count;
      n = std::min(n, std::max(count, 1));
    }
    if (row.top_p < 1.0f) {
      double mass = 0.0;
      int cut = vocab;
      for (int i = 0; i < n; ++i) {
        mass += probs[order[i]];
        if (mass >= row.top_p) {
          cut = i + 1;
          break;
        }
      }
      n = std::min(n, std::max(cut, 1));
    }
    double total = 0.0;
    for (int i = 0; i < n; ++i) total += probs[order[i]];
    const double target = static_cast<double>(SamplingUniform(row.seed, row.step)) * total;
    int chosen = n - 1;
    double running = 0.0;
    for (int i = 0; i < n; ++i) {
      running += probs[order[i]];
      if (target < running) {
        chosen = i;
        break;
      }
    }
    result->token_id = order[chosen];
  }

  // Logprobs from the raw distribution.
  if (row.num_top_logprobs >= 0) {
    result->logprob = logprobs[result->token_id];
    const int k = std::min(row.num_top_logprobs, vocab);
    if (k > 0) {
      std::vector<int32_t> ids(static_cast<size_t>(vocab));
      std::iota(ids.begin(), ids.end(), 0);
      std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                        [&](int32_t a, int32_t b) { return Before(logprobs, a, b); });
      for (int i = 0; i < k; ++i) result->top.push_back({ids[i], logprobs[ids[i]]});
    }
    for (int32_t id : row.requested_token_ids) {
      if (!in_vocab(id))
        return Status::InvalidArgument("requested token id " + std::to_string(id) +
                                       " outside vocabulary");
      result->requested.push_back({id, logprobs[id]});
    }
  }
  return Status::Ok();
}

}  // namespace kiln::cpu
