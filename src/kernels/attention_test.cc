// Parity tests of PagedAttention (tensor-core prefill kernels, decode kernels, split-KV combine)
// against its CPU twin cpu::PagedAttention (float32, same rounded inputs), on random paged caches
// with shuffled block tables: pure prefill, prefill over a cached prefix (chunked prefill), short
// query runs and decodes, mixed in one batch. Skips when no GPU is present.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/forward_batch.h"
#include "kernels/attention_variants.h"
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

}  // namespace
}  // namespace kiln::kernels
