#include "backend/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>

#include "common/check.h"

namespace kiln::cpu {

void EmbeddingGather(const int32_t* token_ids, int num_tokens, const float* table, int hidden_size,
                     float* out) {
  for (int t = 0; t < num_tokens; ++t)
    std::copy_n(table + static_cast<int64_t>(token_ids[t]) * hidden_size, hidden_size,
                out + static_cast<int64_t>(t) * hidden_size);
}

namespace {
// Normalizes one row: out = x * rsqrt(mean(x^2) + eps) * weight.
inline void NormRow(const float* x, const float* weight, int n, float eps, float* out) {
  float sum_sq = 0.0f;
  for (int i = 0; i < n; ++i) sum_sq += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * inv * weight[i];
}
}  // namespace

void RmsNorm(const float* x, const float* weight, int num_tokens, int hidden_size, float eps,
             float* out) {
  for (int t = 0; t < num_tokens; ++t) {
    const int64_t off = static_cast<int64_t>(t) * hidden_size;
    NormRow(x + off, weight, hidden_size, eps, out + off);
  }
}

void AddRmsNorm(float* residual, const float* x, const float* weight, int num_tokens,
                int hidden_size, float eps, float* out) {
  for (int t = 0; t < num_tokens; ++t) {
    const int64_t off = static_cast<int64_t>(t) * hidden_size;
    for (int i = 0; i < hidden_size; ++i) residual[off + i] += x[off + i];
    NormRow(residual + off, weight, hidden_size, eps, out + off);
  }
}

namespace {
void RotateHeads(float* x, int num_heads, int head_dim, const float* cos_v, const float* sin_v,
                 bool interleaved) {
  const int half = head_dim / 2;
  for (int h = 0; h < num_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const int ia = interleaved ? 2 * i : i;
      const int ib = interleaved ? 2 * i + 1 : i + half;
      const float a = v[ia], b = v[ib];
      v[ia] = a * cos_v[i] - b * sin_v[i];
      v[ib] = b * cos_v[i] + a * sin_v[i];
    }
  }
}
}  // namespace

void ApplyRope(float* q, float* k, const int32_t* positions, int num_tokens, int num_heads,
               int num_kv_heads, int head_dim, const float* inv_freq, float attention_scaling,
               bool interleaved) {
  const int half = head_dim / 2;
  std::vector<float> cos_v(half), sin_v(half);
  for (int t = 0; t < num_tokens; ++t) {
    const float pos = static_cast<float>(positions[t]);
    for (int i = 0; i < half; ++i) {
      const float angle = pos * inv_freq[i];
      cos_v[i] = std::cos(angle) * attention_scaling;
      sin_v[i] = std::sin(angle) * attention_scaling;
    }
    RotateHeads(q + static_cast<int64_t>(t) * num_heads * head_dim, num_heads, head_dim,
                cos_v.data(), sin_v.data(), interleaved);
    RotateHeads(k + static_cast<int64_t>(t) * num_kv_heads * head_dim, num_kv_heads, head_dim,
                cos_v.data(), sin_v.data(), interleaved);
  }
}

void HeadRmsNorm(float* x, const float* weight, int num_tokens, int num_heads, int head_dim,
                 float eps) {
  RmsNorm(x, weight, num_tokens * num_heads, head_dim, eps, x);
}

void SiluMul(const float* gate_up, int num_tokens, int intermediate_size, float* out) {
  for (int t = 0; t < num_tokens; ++t) {
    const float* g = gate_up + static_cast<int64_t>(t) * 2 * intermediate_size;
    const float* u = g + intermediate_size;
    float* o = out + static_cast<int64_t>(t) * intermediate_size;
    for (int j = 0; j < intermediate_size; ++j) o[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
  }
}

void WriteKvCache(const float* k, const float* v, const int64_t* slot_mapping, int num_tokens,
                  int num_kv_heads, int head_dim, float* k_cache, float* v_cache) {
  const int64_t row = static_cast<int64_t>(num_kv_heads) * head_dim;
  for (int t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    std::copy_n(k + t * row, row, k_cache + slot * row);
    std::copy_n(v + t * row, row, v_cache + slot * row);
  }
}

namespace {
// Attention of one (token, head): q_vec [D] over positions 0..pos of sequence `seq`.
void AttendOne(const float* q_vec, const float* k_cache, const float* v_cache,
               const int32_t* block_table, int pos, int kv_head, int num_kv_heads, int head_dim,
               int block_size, float scale, float* scores, float* out) {
  const int64_t row = static_cast<int64_t>(num_kv_heads) * head_dim;
  float max_score = -INFINITY;
  for (int p = 0; p <= pos; ++p) {
    const int64_t slot =
        static_cast<int64_t>(block_table[p / block_size]) * block_size + p % block_size;
    const float* k_vec = k_cache + slot * row + static_cast<int64_t>(kv_head) * head_dim;
    float dot = 0.0f;
    for (int d = 0; d < head_dim; ++d) dot += q_vec[d] * k_vec[d];
    scores[p] = dot * scale;
    max_score = std::max(max_score, scores[p]);
  }
  float denom = 0.0f;
  for (int p = 0; p <= pos; ++p) {
    scores[p] = std::exp(scores[p] - max_score);
    denom += scores[p];
  }
  std::fill_n(out, head_dim, 0.0f);
  for (int p = 0; p <= pos; ++p) {
    const int64_t slot =
        static_cast<int64_t>(block_table[p / block_size]) * block_size + p % block_size;
    const float* v_vec = v_cache + slot * row + static_cast<int64_t>(kv_head) * head_dim;
    const float w = scores[p] / denom;
    for (int d = 0; d < head_dim; ++d) out[d] += w * v_vec[d];
  }
}
}  // namespace

void PagedAttention(const float* q, const float* k_cache, const float* v_cache,
                    const ForwardBatch& batch, int num_heads, int num_kv_heads, int head_dim,
                    int block_size, float scale, float* out, int num_threads) {
  const int num_tokens = batch.num_tokens();
  // token row → sequence index
  std::vector<int> seq_of(static_cast<size_t>(num_tokens));
  for (int s = 0; s < batch.num_seqs(); ++s)
    for (int t = batch.cu_seqlens_q[s]; t < batch.cu_seqlens_q[s + 1]; ++t) seq_of[t] = s;
  const int group = num_heads / num_kv_heads;
  const int64_t num_items = static_cast<int64_t>(num_tokens) * num_heads;
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const int t = static_cast<int>(item / num_heads);
      const int h = static_cast<int>(item % num_heads);
      const int s = seq_of[t];
      const int pos = batch.positions[t];
      scores.resize(static_cast<size_t>(pos) + 1);
      const int64_t qo = (static_cast<int64_t>(t) * num_heads + h) * head_dim;
      AttendOne(q + qo, k_cache, v_cache,
                batch.block_tables.data() + static_cast<int64_t>(s) * batch.max_blocks_per_seq, pos,
                h / group, num_kv_heads, head_dim, block_size, scale, scores.data(), out + qo);
    }
  };
  // Thread start-up costs tens of microseconds: only split work that is large enough.
  int64_t total_work = 0;
  for (int t = 0; t < num_tokens; ++t) total_work += batch.positions[t] + 1;
  total_work *= static_cast<int64_t>(num_heads) * head_dim;
  const int64_t kMinWorkPerThread = int64_t{1} << 17;
  const int threads = static_cast<int>(std::min<int64_t>(
      {std::max(num_threads, 1), num_items, std::max<int64_t>(total_work / kMinWorkPerThread, 1)}));
  if (threads <= 1) {
    work(0, num_items);
    return;
  }
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i)
    pool.emplace_back(work, num_items * i / threads, num_items * (i + 1) / threads);
  for (std::thread& th : pool) th.join();
}

}  // namespace kiln::cpu
