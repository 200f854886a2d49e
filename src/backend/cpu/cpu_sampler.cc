#include "backend/cpu/cpu_sampler.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <cmath>
#include <numeric>
#include <unordered_map>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kiln::cpu {
namespace {

bool Before(const std::vector<float>& v, int32_t a, int32_t b) {
  return v[a] > v[b] || (v[a] == v[b] && a < b);
}

// The draw of SamplingRow semantics step 3 over unsorted probabilities, with the GPU's
// SelectKernel (kernels/sampling.cuh) semantics: the order is (probability descending, id
// ascending); masses are sums of round(p * 2^31) as integers (exact, so any summation order gives
// the same result, and CPU and GPU agree given the same probabilities). No sort of the
// vocabulary: a histogram of the keys' top 11 bits (non-negative floats order like their
// unsigned bits) is built once per row; a select finds the digit where its target is reached,
// narrows that digit's elements by the next 11 bits while there are many, and sorts only the few
// left.
constexpr double kMassScale = 2147483648.0;  // 2^31: a row's total fits 32 bits (GPU histograms)

// round-to-nearest-even of p * 2^31 (exact in float): the GPU's __float2uint_rn.
uint32_t MassFixed(float p) {
#if defined(__x86_64__)
  return static_cast<uint32_t>(_mm_cvtss_si64(_mm_set_ss(p * 2147483648.0f)));
#else
  return static_cast<uint32_t>(std::llrint(static_cast<double>(p) * kMassScale));
#endif
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

class OrderSelector {
 public:
  explicit OrderSelector(const std::vector<float>& probs) {
    const int vocab = static_cast<int>(probs.size());
    keys_.resize(static_cast<size_t>(vocab));
    masses_.resize(static_cast<size_t>(vocab));
    for (int i = 0; i < vocab; ++i) {
      keys_[i] = Key(probs[i]);
      masses_[i] = MassFixed(probs[i]);
      ++top_count_[keys_[i] >> kTopShift];
      top_mass_[keys_[i] >> kTopShift] += masses_[i];
    }
  }

  uint64_t total_mass() const {
    uint64_t m = 0;
    for (uint64_t x : top_mass_) m += x;
    return m;
  }

  // The first element of the order within `cut` whose inclusive prefix reaches the target
  // (kPosition: the element at 0-based `position`; otherwise the first whose prefix mass is >= /
  // > mass_target); found == false when no element of the cut does.
  Selected Select(Cut cut, SelectBy by, int position, double mass_target) {
    auto reached = [&](uint64_t count, uint64_t mass) {
      switch (by) {
        case SelectBy::kPosition: return count > static_cast<uint64_t>(position);
        case SelectBy::kMassAtLeast: return static_cast<double>(mass) >= mass_target;
        default: return static_cast<double>(mass) > mass_target;
      }
    };
    // Top digit from the row's histogram: the digits above the cut's own top digit lie wholly
    // inside the cut, so the first digit reaching a target inside the cut is the same as in the
    // cut's histogram; one below the cut's top digit means the target is beyond the cut.
    uint64_t count_ahead = 0, mass_ahead = 0;
    int digit = -1;
    for (int d = kTopBins - 1; d >= 0; --d) {
      if (top_count_[d] > 0 && reached(count_ahead + top_count_[d], mass_ahead + top_mass_[d])) {
        digit = d;
        break;
      }
      count_ahead += top_count_[d];
      mass_ahead += top_mass_[d];
    }
    if (digit < static_cast<int>(cut.key >> kTopShift)) return Selected{};
    cand_.clear();
    for (int i = 0; i < static_cast<int>(keys_.size()); ++i) {
      if (static_cast<int>(keys_[i] >> kTopShift) == digit && cut.Contains(keys_[i], i))
        cand_.push_back(i);
    }
    // Narrow by the next bits while many elements share the digit (flat distributions).
    for (int shift = kTopShift - 11; cand_.size() > 256 && shift >= 0; shift -= 11) {
      const uint32_t bins = 1u << std::min(11, shift + 11);
      std::vector<uint64_t> count(bins), mass(bins);
      for (int i : cand_) {
        const uint32_t d = (keys_[i] >> shift) & (bins - 1);
        ++count[d];
        mass[d] += masses_[i];
      }
      int sub = -1;
      for (int d = static_cast<int>(bins) - 1; d >= 0; --d) {
        if (count[d] > 0 && reached(count_ahead + count[d], mass_ahead + mass[d])) {
          sub = d;
          break;
        }
        count_ahead += count[d];
        mass_ahead += mass[d];
      }
      if (sub < 0) return Selected{};
      std::erase_if(cand_, [&](int i) {
        return ((keys_[i] >> shift) & (bins - 1)) != static_cast<uint32_t>(sub);
      });
    }
    std::sort(cand_.begin(), cand_.end(), [&](int a, int b) {
      return keys_[a] > keys_[b] || (keys_[a] == keys_[b] && a < b);
    });
    for (int i : cand_) {
      ++count_ahead;
      mass_ahead += masses_[i];
      if (reached(count_ahead, mass_ahead)) {
        return Selected{true, keys_[i], i, static_cast<int>(count_ahead), mass_ahead};
      }
    }
    return Selected{};
  }

 private:
  static constexpr int kTopShift = 21, kTopBins = 1 << 11;
  std::vector<uint32_t> keys_;
  std::vector<uint32_t> masses_;
  uint64_t top_count_[kTopBins] = {};
  uint64_t top_mass_[kTopBins] = {};
  std::vector<int> cand_;
};

}  // namespace

int32_t DrawFromProbs(const std::vector<float>& probs, int top_k, float min_p, float top_p,
                      float uniform) {
  const int vocab = static_cast<int>(probs.size());
  OrderSelector selector(probs);
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
  if (top_k > 0 && top_k < n) set_cut(selector.Select(cut, SelectBy::kPosition, top_k - 1, 0.0));
  if (min_p > 0.0f) {
    const float threshold = min_p * *std::max_element(probs.begin(), probs.end());
    int count = 0;
    for (int i = 0; i < vocab; ++i) count += cut.Contains(Key(probs[i]), i) && probs[i] >= threshold;
    count = std::max(count, 1);
    if (count < n) set_cut(selector.Select(cut, SelectBy::kPosition, count - 1, 0.0));
  }
  if (top_p < 1.0f) {
    const Selected sel =
        selector.Select(cut, SelectBy::kMassAtLeast, 0, static_cast<double>(top_p) * kMassScale);
    if (sel.found && sel.count < n) set_cut(sel);
  }
  if (!have_mass) cut_mass = selector.total_mass();
  const double target = static_cast<double>(uniform) * static_cast<double>(cut_mass);
  Selected chosen = selector.Select(cut, SelectBy::kMassAbove, 0, target);
  if (!chosen.found) chosen = selector.Select(cut, SelectBy::kPosition, n - 1, 0.0);
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
