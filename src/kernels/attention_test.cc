// Parity tests of PagedAttention (tensor-core prefill kernels, decode kernels, split-KV combine)
// against its CPU twin cpu::PagedAttention (float32, same rounded inputs), on random paged caches
// with shuffled block tables: pure prefill, prefill over a cached prefix (chunked prefill), short
// query runs and decodes, mixed in one batch; and the decode kernel's fused RoPE + KV write
// against RopeKvCache followed by PagedAttention. Skips when no GPU is present.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/forward_batch.h"
#include "kernels/attention_variants.h"
#include "kernels/rope.h"
#include "kernels/test_util.h"

namespace kiln::kernels {
namespace {

using testing::CompareClose;
using testing::DeviceBuffer;
using testing::RandomValues;
using testing::ToFloats;

struct SeqSpec {
  int q_len;
  int seq_len;
};

struct AttentionCase {
  int num_heads, num_kv_heads, head_dim, block_size;
  std::vector<SeqSpec> seqs;
  int num_kv_splits = 0;  // 0 → auto
};

template <typename T>
using Launcher = std::function<cudaError_t(const PagedAttentionParams<T>&)>;

template <typename T>
void RunCase(
    const AttentionCase& c, std::mt19937& rng,
    Launcher<T> launch = [](const PagedAttentionParams<T>& p) {
      return PagedAttention(p, nullptr);
    }) {
  const int H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim, bs = c.block_size;
  const int num_seqs = static_cast<int>(c.seqs.size());
  std::vector<int32_t> cu{0}, seq_lens;
  int max_blocks = 0, max_q = 0, max_len = 0;
  for (const SeqSpec& s : c.seqs) {
    cu.push_back(cu.back() + s.q_len);
    seq_lens.push_back(s.seq_len);
    max_blocks = std::max(max_blocks, (s.seq_len + bs - 1) / bs);
    max_q = std::max(max_q, s.q_len);
    max_len = std::max(max_len, s.seq_len);
  }
  const int num_tokens = cu.back();
  const int num_blocks = num_seqs * max_blocks + 3;
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> tables(static_cast<size_t>(num_seqs) * max_blocks, -1);
  int next = 0;
  for (int i = 0; i < num_seqs; ++i) {
    const int nb = (c.seqs[i].seq_len + bs - 1) / bs;
    for (int b = 0; b < nb; ++b) tables[i * max_blocks + b] = perm[next++];
  }
  const size_t cache_size = static_cast<size_t>(num_blocks) * bs * Hkv * D;
  std::vector<float> q_f, k_f, v_f;
  auto q = RandomValues<T>(static_cast<size_t>(num_tokens) * H * D, 1.0f, rng, &q_f);
  auto k = RandomValues<T>(cache_size, 1.0f, rng, &k_f);
  auto v = RandomValues<T>(cache_size, 1.0f, rng, &v_f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D)) * 2.0f;  // sharper than usual

  DeviceBuffer<T> d_q(q), d_k(k), d_v(v), d_out(static_cast<size_t>(num_tokens) * H * D);
  DeviceBuffer<int32_t> d_cu(cu), d_lens(seq_lens), d_tables(tables);
  const size_t ws_bytes = PagedAttentionWorkspaceSize(num_tokens, H, D, kMaxKvSplits);
  DeviceBuffer<float> d_ws(ws_bytes / sizeof(float));
  d_out.Poison();
  d_ws.Poison();

  PagedAttentionParams<T> p;
  p.q = d_q.get();
  p.q_stride = H * D;
  p.k_cache = d_k.get();
  p.v_cache = d_v.get();
  p.out = d_out.get();
  p.out_stride = H * D;
  p.cu_seqlens_q = d_cu.get();
  p.seq_lens = d_lens.get();
  p.block_tables = d_tables.get();
  p.max_blocks_per_seq = max_blocks;
  p.num_seqs = num_seqs;
  p.num_tokens = num_tokens;
  p.num_heads = H;
  p.num_kv_heads = Hkv;
  p.head_dim = D;
  p.block_size = bs;
  p.max_seqlen_q = max_q;
  p.max_seq_len = max_len;
  p.scale = scale;
  p.workspace = d_ws.get();
  p.workspace_size_bytes = ws_bytes;
  p.num_kv_splits = c.num_kv_splits;
  KILN_CUDA_OK(launch(p));
  KILN_CUDA_OK(cudaDeviceSynchronize());

  ForwardBatch batch;
  batch.cu_seqlens_q = cu;
  batch.seq_lens = seq_lens;
  batch.block_tables = tables;
  batch.max_blocks_per_seq = max_blocks;
  batch.token_ids.assign(num_tokens, 0);
  for (int i = 0; i < num_seqs; ++i) {
    for (int t = cu[i]; t < cu[i + 1]; ++t) {
      batch.positions.push_back(seq_lens[i] - (cu[i + 1] - cu[i]) + (t - cu[i]));
    }
  }
  std::vector<float> twin(static_cast<size_t>(num_tokens) * H * D);
  cpu::PagedAttention(q_f.data(), k_f.data(), v_f.data(), batch, H, Hkv, D, bs, scale, twin.data(),
                      4);
  const std::vector<double> want(twin.begin(), twin.end());
  // bf16: P is rounded to bf16 before P·V on the tensor-core path, output rounded to bf16.
  const double atol = std::is_same_v<T, float> ? 3e-5 : 6e-3;
  const double rtol = std::is_same_v<T, float> ? 2e-4 : 2e-2;
  EXPECT_EQ(CompareClose(ToFloats(d_out.ToHost()), want, atol, rtol), "")
      << "H " << H << " Hkv " << Hkv << " D " << D << " block_size " << bs << " splits "
      << c.num_kv_splits;
}

template <typename T>
class AttentionTest : public testing::GpuTest {};

using Types = ::testing::Types<float, __nv_bfloat16>;
TYPED_TEST_SUITE(AttentionTest, Types);

// Prefill from scratch, prefill over a cached prefix, a chunk, decode and short runs together.
const std::vector<SeqSpec> kMixed = {{300, 300}, {1, 517}, {200, 731}, {5, 40}, {1, 1}, {130, 130}};

TYPED_TEST(AttentionTest, MixedBatchHeadDim128Gqa7) {
  RunCase<TypeParam>({14, 2, 128, 16, kMixed}, this->rng_);
}

TYPED_TEST(AttentionTest, MixedBatchHeadDim64BlockSize32) {
  RunCase<TypeParam>({8, 4, 64, 32, kMixed}, this->rng_);
}

TYPED_TEST(AttentionTest, SmallHeadDims) {
  RunCase<TypeParam>({4, 2, 32, 16, {{20, 20}, {1, 77}, {9, 50}}}, this->rng_);  // tiny-qwen2
  RunCase<TypeParam>({8, 4, 8, 64, {{33, 33}, {1, 300}}}, this->rng_);           // stories260K
  RunCase<TypeParam>({6, 2, 96, 16, {{12, 12}, {1, 90}}}, this->rng_);
}

TYPED_TEST(AttentionTest, DecodeWithForcedSplits) {
  std::vector<SeqSpec> decodes;
  for (int i = 0; i < 9; ++i) decodes.push_back({1, 1 + 311 * i});
  for (int splits : {1, 3, 64}) {
    RunCase<TypeParam>({28, 4, 128, 16, decodes, splits}, this->rng_);
  }
}

TYPED_TEST(AttentionTest, LongPrefillOverPrefix) {
  RunCase<TypeParam>({4, 1, 128, 128, {{700, 1500}, {257, 257}}}, this->rng_);
}

// The TMA prefill kernel copies whole pages (block_size < 128) or 128-row slices of a page
// (block_size >= 128) per tensor copy, and gathers a tile that ends inside the sequence with
// cp.async; cover page sizes on both sides of the tile and sequence ends on and off the tile grid.
using AttentionTmaPrefillTest = testing::GpuTest;

TEST_F(AttentionTmaPrefillTest, BlockSizesAndTileEnds) {
  std::mt19937& rng = rng_;
  const std::vector<SeqSpec> seqs = {{512, 512}, {384, 1024}, {129, 700}, {9, 9}, {1, 300}};
  for (int block_size : {16, 32, 64, 256}) {
    SCOPED_TRACE("block_size " + std::to_string(block_size));
    RunCase<__nv_bfloat16>({14, 2, 128, block_size, seqs}, rng);
  }
}

// Every tensor-core configuration on the same batch (the dispatcher uses one of them).
using AttentionVariantsTest = testing::GpuTest;

TEST_F(AttentionVariantsTest, EveryPrefillAndDecodeConfigurationMatches) {
  std::mt19937& rng = rng_;
  using bf16 = __nv_bfloat16;
  const AttentionCase prefill{14, 2, 128, 16, {{300, 300}, {200, 731}, {1, 90}, {130, 130}}};
  const int configs[][2] = {{4, 64},   {8, 64},  {4, 128}, {8, 32},   {-1, 64},
                            {-1, 128}, {-2, 64}, {-3, 64}, {-3, 128}, {-4, 128}};
  for (const auto& cfg : configs) {
    SCOPED_TRACE("prefill warps " + std::to_string(cfg[0]) + " block_n " + std::to_string(cfg[1]));
    RunCase<bf16>(prefill, rng, [&](const PagedAttentionParams<bf16>& p) {
      return PagedAttentionPrefillVariant(p, cfg[0], cfg[1], nullptr);
    });
  }
  const AttentionCase decode{14, 2, 128, 16, {{1, 700}, {3, 90}, {1, 1}, {1, 64}}, 4};
  for (bool tensor_cores : {true, false}) {
    SCOPED_TRACE(tensor_cores ? "decode tensor cores" : "decode CUDA cores");
    RunCase<bf16>(decode, rng, [&](const PagedAttentionParams<bf16>& p) {
      return PagedAttentionDecodeVariant(p, tensor_cores, nullptr);
    });
  }
}

// Decode with RoPE and the KV write fused into the attention kernel (PagedAttentionFusedRope)
// against RopeKvCache then PagedAttention on copies of the same inputs: output and both caches
// bit-identical, with and without KV splits, a padding row (slot -1) included.
using AttentionFusedRopeTest = testing::GpuTest;

void CheckFusedRope(int H, int Hkv, int D, const std::vector<int>& seq_lens, int splits,
                    std::mt19937& rng) {
  using bf16 = __nv_bfloat16;
  SCOPED_TRACE(::testing::Message() << "H " << H << " Hkv " << Hkv << " D " << D << " splits "
                                    << splits);
  constexpr int kBs = 16;
  const int n = static_cast<int>(seq_lens.size());
  int max_blocks = 0, max_len = 0;
  for (int len : seq_lens) {
    max_blocks = std::max(max_blocks, (len + kBs - 1) / kBs);
    max_len = std::max(max_len, len);
  }
  const int num_blocks = n * max_blocks;
  std::vector<int32_t> perm(num_blocks), tables(static_cast<size_t>(n) * max_blocks), cu{0};
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::copy(perm.begin(), perm.end(), tables.begin());
  std::vector<int32_t> positions;
  std::vector<int64_t> slots;
  for (int i = 0; i < n; ++i) {
    cu.push_back(i + 1);
    const int pos = seq_lens[i] - 1;
    positions.push_back(pos);
    // The last row is a graph padding row: no KV write.
    slots.push_back(i == n - 1 ? -1
                               : static_cast<int64_t>(tables[i * max_blocks + pos / kBs]) * kBs +
                                     pos % kBs);
  }
  const int width = (H + 2 * Hkv) * D;
  std::vector<float> unused, inv_freq(D / 2);
  for (int i = 0; i < D / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / D);
  auto qkv = RandomValues<bf16>(static_cast<size_t>(n) * width, 1.0f, rng, &unused);
  const size_t cache_size = static_cast<size_t>(num_blocks) * kBs * Hkv * D;
  auto k0 = RandomValues<bf16>(cache_size, 1.0f, rng, &unused);
  auto v0 = RandomValues<bf16>(cache_size, 1.0f, rng, &unused);
  DeviceBuffer<bf16> qkv_a(qkv), qkv_b(qkv), k_a(k0), v_a(v0), k_b(k0), v_b(v0);
  DeviceBuffer<bf16> out_a(static_cast<size_t>(n) * H * D), out_b(static_cast<size_t>(n) * H * D);
  DeviceBuffer<int32_t> d_cu(cu), d_lens(std::vector<int32_t>(seq_lens.begin(), seq_lens.end())),
      d_tables(tables), d_pos(positions);
  DeviceBuffer<int64_t> d_slots(slots);
  DeviceBuffer<float> d_freq(inv_freq);
  const size_t ws_bytes = PagedAttentionWorkspaceSize(n, H, D, kMaxKvSplits);
  DeviceBuffer<float> ws_a(ws_bytes / sizeof(float)), ws_b(ws_bytes / sizeof(float));
  out_a.Poison();
  out_b.Poison();

  auto attention = [&](bf16* qkv_ptr, bf16* k, bf16* v, bf16* out, float* ws) {
    PagedAttentionParams<bf16> p;
    p.q = qkv_ptr;
    p.q_stride = width;
    p.k_cache = k;
    p.v_cache = v;
    p.out = out;
    p.out_stride = H * D;
    p.cu_seqlens_q = d_cu.get();
    p.seq_lens = d_lens.get();
    p.block_tables = d_tables.get();
    p.max_blocks_per_seq = max_blocks;
    p.num_seqs = n;
    p.num_tokens = n;
    p.num_heads = H;
    p.num_kv_heads = Hkv;
    p.head_dim = D;
    p.block_size = kBs;
    p.max_seqlen_q = 1;
    p.max_seq_len = max_len;
    p.scale = 1.0f / std::sqrt(static_cast<float>(D));
    p.workspace = ws;
    p.workspace_size_bytes = ws_bytes;
    p.num_kv_splits = splits;
    return p;
  };
  // Unfused: RopeKvCache rotates q in place and writes k / v, then attention.
  RopeKvCacheParams<bf16> rope;
  rope.q = qkv_a.get();
  rope.q_stride = width;
  rope.k = qkv_a.get() + H * D;
  rope.k_stride = width;
  rope.v = qkv_a.get() + (H + Hkv) * D;
  rope.v_stride = width;
  rope.positions = d_pos.get();
  rope.inv_freq = d_freq.get();
  rope.attention_scaling = 1.1f;
  rope.slot_mapping = d_slots.get();
  rope.k_cache = k_a.get();
  rope.v_cache = v_a.get();
  rope.num_tokens = n;
  rope.num_heads = H;
  rope.num_kv_heads = Hkv;
  rope.head_dim = D;
  KILN_CUDA_OK(RopeKvCache(rope, nullptr));
  KILN_CUDA_OK(PagedAttention(attention(qkv_a.get(), k_a.get(), v_a.get(), out_a.get(),
                                        ws_a.get()),
                              nullptr));
  // Fused.
  PagedAttentionParams<bf16> p = attention(qkv_b.get(), k_b.get(), v_b.get(), out_b.get(),
                                           ws_b.get());
  p.rope.enabled = true;
  p.rope.positions = d_pos.get();
  p.rope.inv_freq = d_freq.get();
  p.rope.attention_scaling = 1.1f;
  p.rope.slot_mapping = d_slots.get();
  p.rope.k_new = qkv_b.get() + H * D;
  p.rope.v_new = qkv_b.get() + (H + Hkv) * D;
  p.rope.kv_stride = width;
  p.rope.k_cache_out = k_b.get();
  p.rope.v_cache_out = v_b.get();
  KILN_CUDA_OK(PagedAttention(p, nullptr));
  KILN_CUDA_OK(cudaDeviceSynchronize());

  auto same = [](const std::vector<bf16>& a, const std::vector<bf16>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0;
  };
  EXPECT_TRUE(same(out_b.ToHost(), out_a.ToHost())) << "attention output";
  EXPECT_TRUE(same(k_b.ToHost(), k_a.ToHost())) << "k cache";
  EXPECT_TRUE(same(v_b.ToHost(), v_a.ToHost())) << "v cache";
  EXPECT_FALSE(same(k_b.ToHost(), k0)) << "the k cache was not written";
}

TEST_F(AttentionFusedRopeTest, DecodeMatchesRopeKvCacheThenAttention) {
  const std::vector<int> lens = {1, 17, 64, 65, 300, 700, 1};
  for (int splits : {0, 1, 3, 8}) {
    CheckFusedRope(28, 4, 128, lens, splits, rng_);
    CheckFusedRope(8, 8, 64, lens, splits, rng_);
  }
}

TEST_F(AttentionFusedRopeTest, RejectsShapesItCannotFuse) {
  using bf16 = __nv_bfloat16;
  EXPECT_TRUE(PagedAttentionFusesRope(28, 4, 128, 1));
  EXPECT_FALSE(PagedAttentionFusesRope(28, 4, 128, 2));   // not a decode step
  EXPECT_FALSE(PagedAttentionFusesRope(28, 4, 96, 1));    // no tensor-core decode kernel
  EXPECT_FALSE(PagedAttentionFusesRope(34, 2, 128, 1));   // group 17 > 16
  DeviceBuffer<bf16> q(4 * 128), k(16 * 128), v(16 * 128), out(4 * 128);
  DeviceBuffer<int32_t> cu(std::vector<int32_t>{0, 1}), lens(std::vector<int32_t>{1}),
      table(std::vector<int32_t>{0}), pos(std::vector<int32_t>{0});
  DeviceBuffer<int64_t> slot(std::vector<int64_t>{0});
  DeviceBuffer<float> freq(64);
  PagedAttentionParams<bf16> p;
  p.q = q.get();
  p.q_stride = 4 * 128;
  p.k_cache = k.get();
  p.v_cache = v.get();
  p.out = out.get();
  p.out_stride = 2 * 128;
  p.cu_seqlens_q = cu.get();
  p.seq_lens = lens.get();
  p.block_tables = table.get();
  p.max_blocks_per_seq = 1;
  p.num_seqs = 1;
  p.num_tokens = 1;
  p.num_heads = 2;
  p.num_kv_heads = 1;
  p.head_dim = 128;
  p.max_seqlen_q = 1;
  p.max_seq_len = 1;
  p.rope.enabled = true;
  p.rope.positions = pos.get();
  p.rope.inv_freq = freq.get();
  p.rope.slot_mapping = slot.get();
  p.rope.k_new = q.get() + 256;
  p.rope.v_new = q.get() + 384;
  p.rope.kv_stride = 4 * 128;
  p.rope.k_cache_out = k.get();
  p.rope.v_cache_out = v.get();
  EXPECT_EQ(PagedAttention(p, nullptr), cudaSuccess);
  KILN_CUDA_OK(cudaDeviceSynchronize());
  PagedAttentionParams<bf16> bad = p;
  bad.rope.k_cache_out = v.get();  // must be the cache that is read
  EXPECT_EQ(PagedAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = p;
  bad.max_seqlen_q = 2;
  EXPECT_EQ(PagedAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = p;
  bad.rope.slot_mapping = nullptr;
  EXPECT_EQ(PagedAttention(bad, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(PagedAttentionDecodeVariant(p, /*tensor_cores=*/false, nullptr),
            cudaErrorInvalidValue);  // the CUDA-core kernel does not fuse
}

}  // namespace
}  // namespace kiln::kernels
