#include "backend/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>

#include "common/check.h"
#include "model/weights.h"
#include "quant/fp8_quant.h"

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

int KvElementBytes(KvElement element) {
  switch (element) {
    case KvElement::kF32:
      return 4;
    case KvElement::kBf16:
      return 2;
    case KvElement::kFp8E4M3:
      return 1;
  }
  return 0;
}

const char* KvElementName(KvElement element) {
  switch (element) {
    case KvElement::kF32:
      return "f32";
    case KvElement::kBf16:
      return "bf16";
    case KvElement::kFp8E4M3:
      return "e4m3";
  }
  return "?";
}

namespace {

// float32 → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN.
uint16_t FloatToBf16Bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Stores `n` floats at element offset `offset` of a cache half in the cache's element type.
void StoreRow(const float* x, int64_t n, KvElement element, float scale, void* cache,
              int64_t offset) {
  switch (element) {
    case KvElement::kF32:
      std::copy_n(x, n, static_cast<float*>(cache) + offset);
      return;
    case KvElement::kBf16: {
      uint16_t* out = static_cast<uint16_t*>(cache) + offset;
      for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16Bits(x[i]);
      return;
    }
    case KvElement::kFp8E4M3:
      quant::QuantizeFp8(x, n, scale, static_cast<uint8_t*>(cache) + offset);
      return;
  }
}

// Reads `n` elements at element offset `offset` as float32 (exactly the stored values).
// `fp8_table` maps every E4M3 code to its value × scale.
inline const float* LoadRow(const void* cache, KvElement element, int64_t offset, int64_t n,
                            const float* fp8_table, float* scratch) {
  switch (element) {
    case KvElement::kF32:
      return static_cast<const float*>(cache) + offset;
    case KvElement::kBf16: {
      const uint16_t* in = static_cast<const uint16_t*>(cache) + offset;
      for (int64_t i = 0; i < n; ++i) scratch[i] = BFloat16ToFloat(in[i]);
      return scratch;
    }
    case KvElement::kFp8E4M3: {
      const uint8_t* in = static_cast<const uint8_t*>(cache) + offset;
      for (int64_t i = 0; i < n; ++i) scratch[i] = fp8_table[in[i]];
      return scratch;
    }
  }
  return nullptr;
}

struct Fp8Tables {
  float k[256], v[256];
  explicit Fp8Tables(const KvCacheLayer& cache) {
    for (int c = 0; c < 256; ++c) {
      k[c] = Fp8E4M3ToFloat(static_cast<uint8_t>(c)) * cache.k_scale;
      v[c] = Fp8E4M3ToFloat(static_cast<uint8_t>(c)) * cache.v_scale;
    }
  }
};

}  // namespace

void WriteKvCache(const float* k, const float* v, const int64_t* slot_mapping, int num_tokens,
                  int num_kv_heads, int head_dim, const KvCacheLayer& cache) {
  const int64_t row = static_cast<int64_t>(num_kv_heads) * head_dim;
  for (int t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    StoreRow(k + t * row, row, cache.element, cache.k_scale, cache.k, slot * row);
    StoreRow(v + t * row, row, cache.element, cache.v_scale, cache.v, slot * row);
  }
}

namespace {
// Attention of one (token, head): q_vec [D] over positions 0..pos of sequence `seq`.
// scratch: [D] floats for converting a bf16 / E4M3 row.
void AttendOne(const float* q_vec, const KvCacheLayer& cache, const Fp8Tables* tables,
               const int32_t* block_table, int pos, int kv_head, int num_kv_heads, int head_dim,
               int block_size, float scale, float* scores, float* scratch, float* out) {
  const int64_t row = static_cast<int64_t>(num_kv_heads) * head_dim;
  const float* k_table = tables != nullptr ? tables->k : nullptr;
  const float* v_table = tables != nullptr ? tables->v : nullptr;
  float max_score = -INFINITY;
  for (int p = 0; p <= pos; ++p) {
    const int64_t slot =
        static_cast<int64_t>(block_table[p / block_size]) * block_size + p % block_size;
    const float* k_vec =
        LoadRow(cache.k, cache.element, slot * row + static_cast<int64_t>(kv_head) * head_dim,
                head_dim, k_table, scratch);
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
    const float* v_vec =
        LoadRow(cache.v, cache.element, slot * row + static_cast<int64_t>(kv_head) * head_dim,
                head_dim, v_table, scratch);
    const float w = scores[p] / denom;
    for (int d = 0; d < head_dim; ++d) out[d] += w * v_vec[d];
  }
}
}  // namespace

void PagedAttention(const float* q, const KvCacheLayer& cache, const ForwardBatch& batch,
                    int num_heads, int num_kv_heads, int head_dim, int block_size, float scale,
                    float* out, int num_threads) {
  const int num_tokens = batch.num_tokens();
  // token row → sequence index
  std::vector<int> seq_of(static_cast<size_t>(num_tokens));
  for (int s = 0; s < batch.num_seqs(); ++s)
    for (int t = batch.cu_seqlens_q[s]; t < batch.cu_seqlens_q[s + 1]; ++t) seq_of[t] = s;
  const int group = num_heads / num_kv_heads;
  const int64_t num_items = static_cast<int64_t>(num_tokens) * num_heads;
  std::unique_ptr<Fp8Tables> tables;
  if (cache.element == KvElement::kFp8E4M3) tables = std::make_unique<Fp8Tables>(cache);
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    std::vector<float> scratch(static_cast<size_t>(head_dim));
    for (int64_t item = begin; item < end; ++item) {
      const int t = static_cast<int>(item / num_heads);
      const int h = static_cast<int>(item % num_heads);
      const int s = seq_of[t];
      const int pos = batch.positions[t];
      scores.resize(static_cast<size_t>(pos) + 1);
      const int64_t qo = (static_cast<int64_t>(t) * num_heads + h) * head_dim;
      AttendOne(q + qo, cache, tables.get(),
                batch.block_tables.data() + static_cast<int64_t>(s) * batch.max_blocks_per_seq, pos,
                h / group, num_kv_heads, head_dim, block_size, scale, scores.data(), scratch.data(),
                out + qo);
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
  for (int i = 0; i < threads; ++i) {
    const int64_t begin = num_items * i / threads, end = num_items * (i + 1) / threads;
    try {
      pool.emplace_back(work, begin, end);
    } catch (const std::system_error&) {
      work(begin, end);  // no thread to be had (EAGAIN): this one does the part
    }
  }
  for (std::thread& th : pool) th.join();
}

}  // namespace kiln::cpu
