#include "backend/cpu/cpu_sampler.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <cmath>
#include <numeric>
#include <unordered_map>
#include <vector>

namespace kiln::cpu {
namespace {

bool Before(const std::vector<float>& v, int32_t a, int32_t b) {
  return v[a] > v[b] || (v[a] == v[b] && a < b);
}

// The draw of SamplingRow semantics step 3 over unsorted probabilities, as the GPU's SelectKernel
// (kernels/sampling.cuh) does it: the order is (probability descending, id ascending); masses are
// sums of round(p * 2^31) as integers (exact, so any summation order gives the same
// result, and CPU and GPU agree given the same probabilities). Each cut and the draw is a radix select over the
// floats' bit patterns (non-negative floats order like their unsigned bits): O(vocab), no sort.
constexpr double kMassScale = 2147483648.0;  // 2^31: a row's total fits 32 bits (GPU histograms)

uint64_t MassFixed(float p) {
  return static_cast<uint64_t>(std::llrint(static_cast<double>(p) * kMassScale));
}
uint32_t Key(float p) { return std::bit_cast<uint32_t>(p); }

// An order-prefix: every element with key > key, or key == key and id <= id.
struct Cut {
  uint32_t key = 0;
  int id = std::numeric_limits<int>::max();
  bool Contains(uint32_t k, int i) const { return k > key || (k == key && i <= id); }
};

struct Selected {
  bool found = false;
  uint32_t key = 0;
  int id = 0;
  int count = 0;      // elements of the order up to and including this one
  uint64_t mass = 0;  // their fixed-point mass
};

enum class SelectBy { kPosition, kMassAtLeast, kMassAbove };

Selected RadixSelect(const std::vector<float>& probs, Cut cut, SelectBy by, int position,
                     double mass_target) {
  const int vocab = static_cast<int>(probs.size());
  auto reached = [&](uint64_t count, uint64_t mass) {
    switch (by) {
      case SelectBy::kPosition: return count > static_cast<uint64_t>(position);
      case SelectBy::kMassAtLeast: return static_cast<double>(mass) >= mass_target;
      default: return static_cast<double>(mass) > mass_target;
    }
  };
  uint32_t prefix = 0;
  uint64_t count_ahead = 0, mass_ahead = 0;
  for (int round = 0; round < 4; ++round) {
    const int shift = 24 - 8 * round;
    const uint32_t high_mask = round == 0 ? 0u : (0xffffffffu << (shift + 8));
    uint64_t count[256] = {}, mass[256] = {};
    for (int i = 0; i < vocab; ++i) {
      const uint32_t k = Key(probs[i]);
      if ((k & high_mask) != prefix || !cut.Contains(k, i)) continue;
      const int d = static_cast<int>((k >> shift) & 255u);
      ++count[d];
      mass[d] += MassFixed(probs[i]);
    }
    int digit = -1;
    for (int d = 255; d >= 0; --d) {
      if (count[d] > 0 && reached(count_ahead + count[d], mass_ahead + mass[d])) {
        digit = d;
        break;
      }
      count_ahead += count[d];
      mass_ahead += mass[d];
    }
    if (digit < 0) return Selected{};
    prefix |= static_cast<uint32_t>(digit) << shift;
  }
  // The ties at the found value, by id: pick the j-th (0-based).
  const uint64_t q = MassFixed(std::bit_cast<float>(prefix));
  int j;
  if (by == SelectBy::kPosition) {
    j = position - static_cast<int>(count_ahead);
  } else {
    const double need = (mass_target - static_cast<double>(mass_ahead)) / static_cast<double>(q);
    j = std::max(0, static_cast<int>(std::ceil(need)) - 1);
    auto reached_at = [&](int jj) {
      return reached(0, mass_ahead + static_cast<uint64_t>(jj + 1) * q);
    };
    while (j > 0 && reached_at(j - 1)) --j;
    while (!reached_at(j)) ++j;
  }
  int seen = 0;
  for (int i = 0; i < vocab; ++i) {
    const uint32_t k = Key(probs[i]);
    if (k != prefix || !cut.Contains(k, i)) continue;
    if (seen++ == j) {
      return Selected{true, prefix, i, static_cast<int>(count_ahead) + j + 1,
                      mass_ahead + static_cast<uint64_t>(j + 1) * q};
    }
  }
  return Selected{};
}


}  // namespace

int32_t DrawFromProbs(const std::vector<float>& probs, int top_k, float min_p, float top_p,
                      float uniform) {
  const int vocab = static_cast<int>(probs.size());
  Cut cut;
  int n = vocab;
  bool have_mass = false;
  uint64_t cut_mass = 0;
  auto set_cut = [&](const Selected& sel) {
    cut = Cut{sel.key, sel.id};
    n = sel.count;
    cut_mass = sel.mass;
    have_mass = true;
  };
  if (top_k > 0 && top_k < n) set_cut(RadixSelect(probs, cut, SelectBy::kPosition, top_k - 1, 0.0));
  if (min_p > 0.0f) {
    const float threshold = min_p * *std::max_element(probs.begin(), probs.end());
    int count = 0;
    for (int i = 0; i < vocab; ++i) count += cut.Contains(Key(probs[i]), i) && probs[i] >= threshold;
    count = std::max(count, 1);
    if (count < n) set_cut(RadixSelect(probs, cut, SelectBy::kPosition, count - 1, 0.0));
  }
  if (top_p < 1.0f) {
    const Selected sel = RadixSelect(probs, cut, SelectBy::kMassAtLeast, 0,
                                     static_cast<double>(top_p) * kMassScale);
    if (sel.found && sel.count < n) set_cut(sel);
  }
  if (!have_mass) {
    for (float p : probs) cut_mass += MassFixed(p);
  }
  const double target = static_cast<double>(uniform) * static_cast<double>(cut_mass);
  Selected chosen = RadixSelect(probs, cut, SelectBy::kMassAbove, 0, target);
  if (!chosen.found) chosen = RadixSelect(probs, cut, SelectBy::kPosition, n - 1, 0.0);
  return chosen.id;
}

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
    result->token_id = DrawFromProbs(probs, row.top_k, row.min_p, row.top_p,
                                     SamplingUniform(row.seed, row.step));
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
