#include "quant/accuracy.h"

#include <algorithm>
#include <cmath>

namespace kiln::quant {
namespace {

// log-softmax of one row into out (double).
void LogSoftmax(const float* row, int vocab, std::vector<double>* out) {
  out->resize(static_cast<size_t>(vocab));
  double max = -INFINITY;
  for (int i = 0; i < vocab; ++i) max = std::max(max, static_cast<double>(row[i]));
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(row[i] - max);
  const double log_z = max + std::log(sum);
  for (int i = 0; i < vocab; ++i) (*out)[i] = row[i] - log_z;
}

int Argmax(const float* row, int vocab) {
  return static_cast<int>(std::max_element(row, row + vocab) - row);
}

}  // namespace

double AccuracyStats::Perplexity() const {
  return nll_tokens ? std::exp(nll_sum / nll_tokens) : 0.0;
}
double AccuracyStats::ReferencePerplexity() const {
  return nll_tokens ? std::exp(ref_nll_sum / nll_tokens) : 0.0;
}

void AccuracyStats::Merge(const AccuracyStats& o) {
  tokens += o.tokens;
  kl_sum += o.kl_sum;
  kl_max = std::max(kl_max, o.kl_max);
  top1_same += o.top1_same;
  confident_tokens += o.confident_tokens;
  confident_same += o.confident_same;
  nll_tokens += o.nll_tokens;
  nll_sum += o.nll_sum;
  ref_nll_sum += o.ref_nll_sum;
}

void AccumulateAccuracy(const float* reference, const float* test, int64_t rows, int vocab,
                        std::span<const int32_t> next_ids, AccuracyStats* stats) {
  std::vector<double> lp, lq;
  for (int64_t r = 0; r < rows; ++r) {
    const float* ref_row = reference + r * vocab;
    const float* test_row = test + r * vocab;
    LogSoftmax(ref_row, vocab, &lp);
    LogSoftmax(test_row, vocab, &lq);
    double kl = 0.0;
    for (int i = 0; i < vocab; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
    kl = std::max(kl, 0.0);  // rounding can make an exact match a hair negative
    stats->kl_sum += kl;
    stats->kl_max = std::max(stats->kl_max, kl);
    const int ref_top = Argmax(ref_row, vocab);
    const bool same = ref_top == Argmax(test_row, vocab);
    stats->top1_same += same;
    float runner_up = -INFINITY;
    for (int i = 0; i < vocab; ++i)
      if (i != ref_top) runner_up = std::max(runner_up, ref_row[i]);
    if (ref_row[ref_top] - runner_up >= kConfidentMargin) {
      ++stats->confident_tokens;
      stats->confident_same += same;
    }
    ++stats->tokens;
    const int32_t next = r < static_cast<int64_t>(next_ids.size()) ? next_ids[r] : -1;
    if (next >= 0 && next < vocab) {
      stats->nll_sum -= lq[next];
      stats->ref_nll_sum -= lp[next];
      ++stats->nll_tokens;
    }
  }
}

StatusOr<std::vector<float>> TeacherForcedLogits(Backend& backend, std::span<const int32_t> ids,
                                                 int chunk_tokens) {
  const int n = static_cast<int>(ids.size());
  const int bs = backend.block_size();
  const int64_t blocks = (n + bs - 1) / bs;
  if (n == 0) return Status::InvalidArgument("empty sequence");
  if (blocks > backend.num_kv_blocks())
    return Status::InvalidArgument("a sequence of " + std::to_string(n) + " tokens needs " +
                                   std::to_string(blocks) + " KV blocks, the backend has " +
                                   std::to_string(backend.num_kv_blocks()));
  const int vocab = backend.config().vocab_size;
  std::vector<float> all, chunk;
  all.reserve(static_cast<size_t>(n) * vocab);
  for (int start = 0; start < n; start += chunk_tokens) {
    const int len = std::min(chunk_tokens, n - start);
    ForwardBatch b;
    for (int i = 0; i < len; ++i) {
      b.token_ids.push_back(ids[start + i]);
      b.positions.push_back(start + i);
      b.slot_mapping.push_back(start + i);
      b.logits_indices.push_back(i);
    }
    b.cu_seqlens_q = {0, len};
    b.seq_lens = {start + len};
    b.max_blocks_per_seq = static_cast<int>(blocks);
    for (int64_t j = 0; j < blocks; ++j) b.block_tables.push_back(static_cast<int32_t>(j));
    b.is_decode_only = len == 1;
    KILN_RETURN_IF_ERROR(backend.Forward(b));
    KILN_RETURN_IF_ERROR(backend.GetLogits(&chunk));
    all.insert(all.end(), chunk.begin(), chunk.end());
  }
  return all;
}

StatusOr<AccuracyStats> CompareOnSequences(Backend& reference, Backend& test,
                                           const std::vector<std::vector<int32_t>>& sequences) {
  if (reference.config().vocab_size != test.config().vocab_size)
    return Status::InvalidArgument("the two backends have different vocabularies");
  AccuracyStats stats;
  for (const std::vector<int32_t>& ids : sequences) {
    KILN_ASSIGN_OR_RETURN(std::vector<float> ref, TeacherForcedLogits(reference, ids));
    KILN_ASSIGN_OR_RETURN(std::vector<float> got, TeacherForcedLogits(test, ids));
    AccumulateAccuracy(ref.data(), got.data(), static_cast<int64_t>(ids.size()),
                       reference.config().vocab_size, std::span<const int32_t>(ids).subspan(1),
                       &stats);
  }
  return stats;
}

}  // namespace kiln::quant
