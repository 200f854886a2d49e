// The reference ops against independent formulations: RoPE tables (llama3, linear, dynamic, yarn,
// checkpoint-dtype rounding), rotate-half vs interleaved, norms, SiLU, paged attention against a
// dense causal attention.
#include "backend/cpu/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backend/cpu/linear.h"
#include "quant/fp8_e4m3.h"

namespace kiln::cpu {
namespace {

const char* kLlamaTopLevel = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 512,
  "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000,
  "rms_norm_eps": 1e-5, "max_position_embeddings": 131072, "rope_theta": 500000.0,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
  "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": [2, 7], "torch_dtype": "float32"})";

// llama3 inv_freq, derived here from the published formula: wavelength λ = 2π / f;
// λ < L/high → f; λ > L/low → f/factor; else smooth s = (L/λ - low)/(high - low) blends f/factor
// and f as (1 - s) f/factor + s f.
TEST(RopeTableTest, Llama3RopeInvFreqMatchesFormula) {
  auto c = ParseHfConfig(kLlamaTopLevel);
  ASSERT_TRUE(c.ok());
  const RopeTable table = ComputeRopeTable(*c);
  ASSERT_EQ(table.inv_freq.size(), 16u);
  int low = 0, mid = 0, high = 0;
  for (int i = 0; i < 16; ++i) {
    const double f = std::pow(500000.0, -2.0 * i / 32.0);
    const double wavelen = 2 * M_PI / f;
    double want;
    if (wavelen < 8192.0 / 4.0) {
      want = f;
      ++high;
    } else if (wavelen > 8192.0 / 1.0) {
      want = f / 8.0;
      ++low;
    } else {
      const double s = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      want = (1 - s) * f / 8.0 + s * f;
      ++mid;
    }
    EXPECT_NEAR(table.inv_freq[i], want, 1e-6 * want) << i;
  }
  // The test covers all three regimes.
  EXPECT_GT(low, 0);
  EXPECT_GT(mid, 0);
  EXPECT_GT(high, 0);
  EXPECT_FLOAT_EQ(table.inv_freq[0], 1.0f);
  EXPECT_EQ(table.attention_scaling, 1.0f);
}

// GGUF Llama-3.x files carry llama3 scaling as per-dimension divisors (the rope_freqs tensor,
// llama.cpp: factor_i = unscaled_i / llama3_i): plain RoPE + those factors = the llama3 table.
TEST(RopeTableTest, RopeFreqFactorsReproduceLlama3Scaling) {
  auto scaled = ParseHfConfig(kLlamaTopLevel);
  ASSERT_TRUE(scaled.ok());
  ModelConfig plain = *scaled;
  plain.rope_scaling = RopeScaling{};
  const RopeTable want = ComputeRopeTable(*scaled);
  const RopeTable unscaled = ComputeRopeTable(plain);
  ASSERT_EQ(want.inv_freq.size(), unscaled.inv_freq.size());
  for (size_t i = 0; i < want.inv_freq.size(); ++i) {
    plain.rope_freq_factors.push_back(unscaled.inv_freq[i] / want.inv_freq[i]);
  }
  const RopeTable got = ComputeRopeTable(plain);
  for (size_t i = 0; i < want.inv_freq.size(); ++i) {
    EXPECT_NEAR(got.inv_freq[i], want.inv_freq[i], 1e-6 * want.inv_freq[i]) << i;
  }
  EXPECT_NE(plain.rope_freq_factors.back(), 1.0f);  // the low-frequency end is really scaled
}

TEST(RopeTableTest, LinearAndDynamicAndYarnRope) {
  std::string base = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10,
    "max_position_embeddings": 4096, "rope_theta": 10000.0, "rope_scaling": )";
  auto linear = ParseHfConfig(base + R"({"type": "linear", "factor": 4.0}})");
  ASSERT_TRUE(linear.ok()) << linear.status().ToString();
  auto t = ComputeRopeTable(*linear);
  EXPECT_NEAR(t.inv_freq[3], std::pow(10000.0, -6.0 / 16) / 4.0, 1e-7);
  auto dynamic = ParseHfConfig(base + R"({"type": "dynamic", "factor": 2.0}})");
  ASSERT_TRUE(dynamic.ok());
  t = ComputeRopeTable(*dynamic);
  // vLLM: base * (f * (L * f) / L - (f - 1))^(D / (D - 2)) = base * 3^(16 / 14) for f = 2, D = 16.
  const double dyn_base = 10000.0 * std::pow(3.0, 16.0 / 14.0);
  EXPECT_NEAR(t.inv_freq[5], std::pow(dyn_base, -10.0 / 16), 1e-7);
  auto yarn = ParseHfConfig(base + R"({"rope_type": "yarn", "factor": 4.0,
      "original_max_position_embeddings": 1024}})");
  ASSERT_TRUE(yarn.ok());
  t = ComputeRopeTable(*yarn);
  EXPECT_NEAR(t.attention_scaling, 0.1 * std::log(4.0) + 1.0, 1e-6);
  EXPECT_FLOAT_EQ(t.inv_freq[0], 1.0f);  // highest frequency: extrapolated (unchanged)
  EXPECT_NEAR(t.inv_freq[7], std::pow(10000.0, -14.0 / 16) / 4.0, 1e-9);  // lowest: interpolated
  EXPECT_FALSE(ParseHfConfig(base + R"({"type": "su", "factor": 4.0}})").ok());
}

TEST(RopeTableTest, RoundsToBf16Checkpoints) {
  auto c = ParseHfConfig(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 128,
    "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10,
    "rope_theta": 1000000.0, "torch_dtype": "bfloat16"})");
  ASSERT_TRUE(c.ok());
  const RopeTable t = ComputeRopeTable(*c);
  for (float f : t.inv_freq) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    EXPECT_EQ(bits & 0xFFFFu, 0u);  // representable in bf16
  }
  EXPECT_NEAR(t.inv_freq[1], std::pow(1e6, -2.0 / 32), 4e-3 * std::pow(1e6, -2.0 / 32));
}

std::vector<float> RandomVector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(OpsTest, RopeInterleavedIsAPermutationOfRotateHalf) {
  const int n = 3, H = 2, Hkv = 1, D = 8;
  std::vector<float> inv = {1.0f, 0.3f, 0.05f, 0.001f};
  std::vector<int32_t> pos = {0, 5, 17};
  auto q = RandomVector(n * H * D, 1), k = RandomVector(n * Hkv * D, 2);
  // Interleaved layout of the same vectors: x'[2i] = x[i], x'[2i+1] = x[i + D/2].
  auto to_interleaved = [&](const std::vector<float>& x) {
    std::vector<float> y(x.size());
    for (size_t h = 0; h < x.size() / D; ++h)
      for (int i = 0; i < D / 2; ++i) {
        y[h * D + 2 * i] = x[h * D + i];
        y[h * D + 2 * i + 1] = x[h * D + i + D / 2];
      }
    return y;
  };
  auto qi = to_interleaved(q), ki = to_interleaved(k);
  auto q0 = q;
  ApplyRope(q.data(), k.data(), pos.data(), n, H, Hkv, D, inv.data(), 1.0f, false);
  ApplyRope(qi.data(), ki.data(), pos.data(), n, H, Hkv, D, inv.data(), 1.0f, true);
  EXPECT_EQ(to_interleaved(q), qi);
  EXPECT_EQ(to_interleaved(k), ki);
  // Position 0 is the identity; rotation preserves norms.
  for (int i = 0; i < H * D; ++i) EXPECT_FLOAT_EQ(q[i], q0[i]);
  for (int h = 0; h < H; ++h) {
    double a = 0, b = 0;
    for (int i = 0; i < D; ++i) {
      a += q0[(2 * H + h) * D + i] * q0[(2 * H + h) * D + i];
      b += q[(2 * H + h) * D + i] * q[(2 * H + h) * D + i];
    }
    EXPECT_NEAR(a, b, 1e-5);
  }
  // One explicit value: pair (x0, x4) of token 1 head 0 rotated by angle 5 * 1.0.
  const float c = std::cos(5.0f), s = std::sin(5.0f);
  EXPECT_NEAR(q[H * D + 0], q0[H * D + 0] * c - q0[H * D + 4] * s, 1e-6);
  EXPECT_NEAR(q[H * D + 4], q0[H * D + 4] * c + q0[H * D + 0] * s, 1e-6);
}

TEST(OpsTest, NormsAndActivation) {
  std::vector<float> x = {1, 2, 3, 4, -1, 0, 0, 1}, w = {1, 0.5f, 2, 1};
  std::vector<float> out(8);
  RmsNorm(x.data(), w.data(), 2, 4, 1e-6f, out.data());
  const float r0 = 1.0f / std::sqrt(30.0f / 4 + 1e-6f);
  EXPECT_NEAR(out[1], 2 * r0 * 0.5f, 1e-6);
  const float r1 = 1.0f / std::sqrt(2.0f / 4 + 1e-6f);
  EXPECT_NEAR(out[4], -1 * r1, 1e-6);
  std::vector<float> residual = {1, 1, 1, 1, 0, 0, 0, 0};
  AddRmsNorm(residual.data(), x.data(), w.data(), 2, 4, 1e-6f, out.data());
  EXPECT_EQ(residual[3], 5.0f);
  const float r2 = 1.0f / std::sqrt((4 + 9 + 16 + 25) / 4.0f + 1e-6f);
  EXPECT_NEAR(out[2], 4 * r2 * 2, 1e-5);
  std::vector<float> head = x;
  HeadRmsNorm(head.data(), w.data(), 1, 2, 4, 1e-6f);
  EXPECT_NEAR(head[1], 2 * r0 * 0.5f, 1e-6);
  std::vector<float> gu = {1, -2, 3, 4}, act(2);
  SiluMul(gu.data(), 1, 2, act.data());
  EXPECT_NEAR(act[0], 1 / (1 + std::exp(-1.0)) * 3, 1e-6);
  EXPECT_NEAR(act[1], -2 / (1 + std::exp(2.0)) * 4, 1e-6);
  std::vector<float> table = {0, 1, 10, 11, 20, 21};
  std::vector<int32_t> ids = {2, 0};
  std::vector<float> emb(4);
  EmbeddingGather(ids.data(), 2, table.data(), 2, emb.data());
  EXPECT_EQ(emb, (std::vector<float>{20, 21, 0, 1}));
}

// One sequence of `len` new tokens at positions 0..len-1 in the blocks `block_tables`.
ForwardBatch PagedBatch(int len, std::vector<int32_t> block_tables, int block_size) {
  ForwardBatch b;
  b.max_blocks_per_seq = static_cast<int>(block_tables.size());
  b.block_tables = std::move(block_tables);
  b.cu_seqlens_q = {0, len};
  b.seq_lens = {len};
  for (int t = 0; t < len; ++t) {
    b.token_ids.push_back(0);
    b.positions.push_back(t);
    b.slot_mapping.push_back(b.block_tables[t / block_size] * block_size + t % block_size);
  }
  return b;
}

// Paged attention with scattered blocks equals dense causal attention computed directly.
TEST(OpsTest, PagedAttentionMatchesDense) {
  const int H = 4, Hkv = 2, D = 16, block_size = 4, len = 11, num_blocks = 8;
  auto q = RandomVector(len * H * D, 3), k = RandomVector(len * Hkv * D, 4),
       v = RandomVector(len * Hkv * D, 5);
  const ForwardBatch b = PagedBatch(len, {5, 1, 6}, block_size);
  std::vector<float> kc(num_blocks * block_size * Hkv * D, NAN), vc(kc.size(), NAN);
  WriteKvCache(k.data(), v.data(), b.slot_mapping.data(), len, Hkv, D, kc.data(), vc.data());
  const float scale = 0.25f;
  for (int threads : {1, 3}) {
    std::vector<float> out(len * H * D);
    PagedAttention(q.data(), kc.data(), vc.data(), b, H, Hkv, D, block_size, scale, out.data(),
                   threads);
    for (int t = 0; t < len; ++t)
      for (int h = 0; h < H; ++h) {
        const int kvh = h / 2;
        std::vector<double> p(t + 1);
        double m = -1e30, z = 0;
        for (int j = 0; j <= t; ++j) {
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += q[(t * H + h) * D + d] * k[(j * Hkv + kvh) * D + d];
          p[j] = dot * scale;
          m = std::max(m, p[j]);
        }
        for (double& x : p) z += (x = std::exp(x - m));
        for (int d = 0; d < D; ++d) {
          double want = 0;
          for (int j = 0; j <= t; ++j) want += p[j] / z * v[(j * Hkv + kvh) * D + d];
          EXPECT_NEAR(out[(t * H + h) * D + d], want, 1e-5) << t << " " << h << " " << d;
        }
      }
  }
}

// A bf16 or E4M3 cache holds exactly the rounded values, and attention over it equals attention
// over a float32 cache holding those values, bit for bit; the FP8 scale divides on write and
// multiplies on read; padding slots (< 0) are skipped.
TEST(OpsTest, PagedAttentionOverBf16AndFp8CachesReadsTheStoredValues) {
  const int H = 4, Hkv = 2, D = 16, block_size = 4, len = 9, num_blocks = 6;
  const int64_t row = Hkv * D, slots = num_blocks * block_size;
  auto q = RandomVector(len * H * D, 13), k = RandomVector(len * Hkv * D, 14),
       v = RandomVector(len * Hkv * D, 15);
  for (float& x : k) x *= 6.0f;  // spread over several binades, some beyond 448 × 0.5 below
  ForwardBatch b = PagedBatch(len, {4, 0, 2}, block_size);
  b.slot_mapping[len - 1] = -1;  // padding: not written (the slot stays at its fill value)
  EXPECT_EQ(KvElementBytes(KvElement::kF32), 4);
  EXPECT_EQ(KvElementBytes(KvElement::kBf16), 2);
  EXPECT_EQ(KvElementBytes(KvElement::kFp8E4M3), 1);
  const float k_scale = 0.5f, v_scale = 0.03125f;
  for (KvElement element : {KvElement::kBf16, KvElement::kFp8E4M3}) {
    SCOPED_TRACE(KvElementName(element));
    std::vector<uint8_t> kc(slots * row * KvElementBytes(element), 0xAB), vc(kc.size(), 0xAB);
    const KvCacheLayer cache{element, kc.data(), vc.data(), k_scale, v_scale};
    WriteKvCache(k.data(), v.data(), b.slot_mapping.data(), len, Hkv, D, cache);
    // The values each element type must hold.
    std::vector<float> kr(slots * row, 0.0f), vr(kr.size(), 0.0f);
    for (int t = 0; t < len - 1; ++t) {
      const int64_t slot = b.slot_mapping[t];
      for (int64_t i = 0; i < row; ++i) {
        const float kx = k[t * row + i], vx = v[t * row + i];
        if (element == KvElement::kBf16) {
          uint16_t kb, vb;
          std::memcpy(&kb, kc.data() + (slot * row + i) * 2, 2);
          std::memcpy(&vb, vc.data() + (slot * row + i) * 2, 2);
          kr[slot * row + i] = BFloat16ToFloat(kb);
          vr[slot * row + i] = BFloat16ToFloat(vb);
          // Round to nearest: within half a bf16 step (2^-8 relative).
          EXPECT_LE(std::fabs(kr[slot * row + i] - kx), std::fabs(kx) * (1.0f / 256));
        } else {
          EXPECT_EQ(kc[slot * row + i], Fp8E4M3FromFloatSat(kx / k_scale));
          EXPECT_EQ(vc[slot * row + i], Fp8E4M3FromFloatSat(vx / v_scale));
          kr[slot * row + i] = Fp8E4M3ToFloat(kc[slot * row + i]) * k_scale;
          vr[slot * row + i] = Fp8E4M3ToFloat(vc[slot * row + i]) * v_scale;
        }
      }
    }
    const int64_t pad = b.block_tables[(len - 1) / block_size] * block_size + (len - 1) % block_size;
    EXPECT_EQ(kc[pad * row * KvElementBytes(element)], 0xAB) << "padding slot was written";
    // Attention over the first len - 1 tokens (the padded one is not attended).
    const ForwardBatch a = PagedBatch(len - 1, {4, 0, 2}, block_size);
    for (int threads : {1, 3}) {
      std::vector<float> got((len - 1) * H * D), want(got.size());
      PagedAttention(q.data(), cache, a, H, Hkv, D, block_size, 0.25f, got.data(), threads);
      PagedAttention(q.data(), kr.data(), vr.data(), a, H, Hkv, D, block_size, 0.25f,
                     want.data(), threads);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
    }
  }
}

// ---- LinearRows (linear.h) ----

// Shapes: `in` below, at and off multiples of 8; `out` off multiples of 4.
const int kIns[] = {1, 7, 8, 13, 64, 100, 256};
const int kOuts[] = {1, 3, 4, 37, 1001};

TEST(LinearRowsTest, MatchesDoubleReference) {
  for (int in : kIns) {
    for (int out : kOuts) {
      const int n = 5;
      const std::vector<float> x = RandomVector(static_cast<size_t>(n) * in, in);
      const std::vector<float> w = RandomVector(static_cast<size_t>(out) * in, out + 7);
      std::vector<float> y(static_cast<size_t>(n) * out, NAN);
      LinearRows(x.data(), n, in, w.data(), out, y.data(), 2);
      for (int t = 0; t < n; ++t) {
        for (int j = 0; j < out; ++j) {
          double want = 0.0, mag = 0.0;
          for (int k = 0; k < in; ++k) {
            want += static_cast<double>(x[t * in + k]) * w[static_cast<size_t>(j) * in + k];
            mag +=
                std::fabs(static_cast<double>(x[t * in + k]) * w[static_cast<size_t>(j) * in + k]);
          }
          ASSERT_NEAR(y[static_cast<size_t>(t) * out + j], want, 1e-6 * mag + 1e-7)
              << "in " << in << " out " << out << " t " << t << " j " << j;
        }
      }
    }
  }
}

// A row's result is bit-identical whether it is computed alone, at any position of a batch of any
// size, or with any number of threads.
TEST(LinearRowsTest, RowsDoNotDependOnTheBatch) {
  if (!LinearRowsIsBatchIndependent()) GTEST_SKIP() << "no AVX2 + FMA: BLAS fallback";
  for (int in : kIns) {
    const int out = 1001, max_n = 19;
    const std::vector<float> x = RandomVector(static_cast<size_t>(max_n) * in, 3 * in);
    const std::vector<float> w = RandomVector(static_cast<size_t>(out) * in, 5 * in);
    std::vector<float> alone(static_cast<size_t>(max_n) * out);
    for (int t = 0; t < max_n; ++t)
      LinearRows(x.data() + static_cast<size_t>(t) * in, 1, in, w.data(), out,
                 alone.data() + static_cast<size_t>(t) * out, 1);
    for (int n : {2, 3, 4, 5, 7, 16, 17}) {
      for (int first : {0, 1, 2}) {
        for (int threads : {1, 2, 3}) {
          std::vector<float> y(static_cast<size_t>(n) * out);
          LinearRows(x.data() + static_cast<size_t>(first) * in, n, in, w.data(), out, y.data(),
                     threads);
          ASSERT_EQ(std::memcmp(y.data(), alone.data() + static_cast<size_t>(first) * out,
                                y.size() * sizeof(float)),
                    0)
              << "in " << in << " n " << n << " first " << first << " threads " << threads;
        }
      }
    }
  }
}

// Large enough to be split across threads: the same bits as one thread.
TEST(LinearRowsTest, ThreadSplitDoesNotChangeResults) {
  const int n = 16, in = 64, out = 151936 / 8 + 3;
  const std::vector<float> x = RandomVector(static_cast<size_t>(n) * in, 11);
  const std::vector<float> w = RandomVector(static_cast<size_t>(out) * in, 12);
  std::vector<float> one(static_cast<size_t>(n) * out), many(one.size());
  LinearRows(x.data(), n, in, w.data(), out, one.data(), 1);
  LinearRows(x.data(), n, in, w.data(), out, many.data(), 4);
  EXPECT_EQ(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace kiln::cpu
