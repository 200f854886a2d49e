#include "engine/sampler.h"

#include <algorithm>
#include <bit>

namespace kiln {

void InitStopIds(std::span<const int32_t> eos_token_ids,
                 std::span<const int32_t> never_sample_ids, RequestState* request) {
  request->never_sample_ids.assign(never_sample_ids.begin(), never_sample_ids.end());
  auto& banned = request->min_tokens_banned_ids;
  banned.clear();
  if (!request->sampling.ignore_eos) banned.assign(eos_token_ids.begin(), eos_token_ids.end());
  banned.insert(banned.end(), request->sampling.stop_token_ids.begin(),
                request->sampling.stop_token_ids.end());
  banned.insert(banned.end(), never_sample_ids.begin(), never_sample_ids.end());
  std::sort(banned.begin(), banned.end());
  banned.erase(std::unique(banned.begin(), banned.end()), banned.end());
}

void BuildSamplingRow(const RequestState& r, SamplingRow* row) {
  *row = SamplingRow{};
  const SamplingParams& p = r.sampling;
  if (r.kind == RequestKind::kScore) {
    row->num_top_logprobs = 0;
    row->requested_token_ids = p.chosen_logprob_token_ids;
    return;
  }
  row->temperature = p.temperature;
  row->top_k = p.top_k;
  row->top_p = p.top_p;
  row->min_p = p.min_p;
  row->seed = r.seed;
  row->step = r.num_output_tokens();
  row->repetition_penalty = p.repetition_penalty;
  row->presence_penalty = p.presence_penalty;
  row->frequency_penalty = p.frequency_penalty;
  row->prompt_token_ids = r.prompt_ids();
  row->output_token_ids = r.output_ids();
  row->num_top_logprobs = p.logprobs;
  if (row->num_top_logprobs < 0 && !p.chosen_logprob_token_ids.empty()) row->num_top_logprobs = 0;
  row->requested_token_ids = p.chosen_logprob_token_ids;
  if (r.constraint != nullptr) row->allowed_token_bitmask = r.allowed_bitmask.data();
  row->banned_token_ids = r.num_output_tokens() < p.min_tokens
                              ? std::span<const int32_t>(r.min_tokens_banned_ids)
                              : std::span<const int32_t>(r.never_sample_ids);
  if (r.constraint != nullptr && !row->banned_token_ids.empty()) {
    // The grammar wins over min_tokens: when it allows only banned ids (e.g. only EOS, once the
    // output is complete), drop the bans instead of masking every token.
    int64_t allowed = 0;
    for (uint32_t w : r.allowed_bitmask) allowed += std::popcount(w);
    for (int32_t id : row->banned_token_ids) {
      const size_t word = static_cast<size_t>(id) / 32;
      if (word < r.allowed_bitmask.size() && ((r.allowed_bitmask[word] >> (id % 32)) & 1u)) {
        --allowed;
      }
    }
    if (allowed <= 0) row->banned_token_ids = r.never_sample_ids;
  }
}

FinishReason CheckStop(const RequestState& r, std::span<const int32_t> eos_token_ids,
                       int max_model_len, int32_t* stop_token_id) {
  const SamplingParams& p = r.sampling;
  const int32_t last = r.token_ids.back();
  if (r.num_output_tokens() >= p.min_tokens) {
    const bool is_eos = !p.ignore_eos && std::find(eos_token_ids.begin(), eos_token_ids.end(),
                                                   last) != eos_token_ids.end();
    const bool is_stop =
        std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), last) != p.stop_token_ids.end();
    if (is_eos || is_stop) {
      *stop_token_id = last;
      return FinishReason::kStop;
    }
  }
  if (r.num_output_tokens() >= p.max_tokens) return FinishReason::kLength;
  if (max_model_len > 0 && r.num_tokens() >= max_model_len) return FinishReason::kLength;
  return FinishReason::kNone;
}

}  // namespace kiln
