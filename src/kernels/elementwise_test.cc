// Parity tests of the element-wise kernels (embedding, RMSNorm, SiLU-and-mul, RoPE + q/k norm +
// bias + KV-cache write) against their CPU twins in backend/cpu/ops.h, on random inputs, for float
// and bf16 (the twin runs in float32 on the same, already rounded, inputs). Skips when no GPU is
// present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include "kernels/activation.h"
#include "kernels/embedding.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/test_util.h"

namespace kiln::kernels {
namespace {

using testing::CompareClose;
using testing::DeviceBuffer;
using testing::RandomValues;
using testing::ToFloats;

template <typename T>
class ElementwiseTest : public testing::GpuTest {};

using Types = ::testing::Types<float, __nv_bfloat16>;
TYPED_TEST_SUITE(ElementwiseTest, Types);

TYPED_TEST(ElementwiseTest, EmbeddingGatherMatchesRowsAndZeroesBadIds) {
  using T = TypeParam;
  for (int hidden : {3584, 100}) {
    const int vocab = 1000, n = 37;
    std::vector<float> table_f;
    auto table = RandomValues<T>(static_cast<size_t>(vocab) * hidden, 1.0f, this->rng_, &table_f);
    std::vector<int32_t> ids(n);
    std::uniform_int_distribution<int> id_dist(0, vocab - 1);
    for (auto& id : ids) id = id_dist(this->rng_);
    ids[5] = vocab;  // out of range → zero row
    ids[6] = -3;
    DeviceBuffer<T> d_table(table);
    DeviceBuffer<int32_t> d_ids(ids);
    DeviceBuffer<T> d_out(static_cast<size_t>(n) * hidden);
    d_out.Poison();
    EmbeddingGatherParams<T> p;
    p.token_ids = d_ids.get();
    p.table = d_table.get();
    p.out = d_out.get();
    p.num_tokens = n;
    p.vocab_size = vocab;
    p.hidden_size = hidden;
    KILN_CUDA_OK(EmbeddingGather(p, nullptr));
    KILN_CUDA_OK(cudaDeviceSynchronize());
    // Twin on the valid ids; rows of out-of-range ids must be zero.
    std::vector<int32_t> twin_ids = ids;
    twin_ids[5] = twin_ids[6] = 0;
    std::vector<float> twin(static_cast<size_t>(n) * hidden);
    cpu::EmbeddingGather(twin_ids.data(), n, table_f.data(), hidden, twin.data());
    std::vector<double> want(twin.begin(), twin.end());
    std::fill_n(want.begin() + 5 * hidden, 2 * hidden, 0.0);
    EXPECT_EQ(CompareClose(ToFloats(d_out.ToHost()), want, 0, 0), "") << "hidden " << hidden;
  }
}

TYPED_TEST(ElementwiseTest, RmsNormAndAddRmsNormMatchReference) {
  using T = TypeParam;
  const float eps = 1e-6f;
  for (int hidden : {3584, 64, 8192, 100}) {
    for (bool with_residual : {false, true}) {
      const int n = 19;
      const size_t size = static_cast<size_t>(n) * hidden;
      std::vector<float> x_f, r_f, w_f;
      auto x = RandomValues<T>(size, 2.0f, this->rng_, &x_f);
      auto r = RandomValues<T>(size, 2.0f, this->rng_, &r_f);
      auto w = RandomValues<T>(hidden, 1.5f, this->rng_, &w_f);
      DeviceBuffer<T> d_x(x), d_r(r), d_w(w), d_out(size);
      d_out.Poison();
      RmsNormParams<T> p;
      p.x = d_x.get();
      p.residual = with_residual ? d_r.get() : nullptr;
      p.weight = d_w.get();
      p.out = d_out.get();
      p.num_tokens = n;
      p.hidden_size = hidden;
      p.eps = eps;
      KILN_CUDA_OK(RmsNorm(p, nullptr));
      KILN_CUDA_OK(cudaDeviceSynchronize());
      std::vector<float> twin_out(size), twin_res = r_f;
      if (with_residual) {
        cpu::AddRmsNorm(twin_res.data(), x_f.data(), w_f.data(), n, hidden, eps, twin_out.data());
      } else {
        cpu::RmsNorm(x_f.data(), w_f.data(), n, hidden, eps, twin_out.data());
      }
      const std::vector<double> want(twin_out.begin(), twin_out.end());
      const std::vector<double> want_res(twin_res.begin(), twin_res.end());
      const double rtol = testing::kRtol<T>;
      // bf16: the kernel normalizes the stored (rounded) residual, the twin the float32 sum.
      EXPECT_EQ(CompareClose(ToFloats(d_out.ToHost()), want, 1e-5, rtol), "")
          << "hidden " << hidden << " residual " << with_residual;
      if (with_residual) {
        EXPECT_EQ(CompareClose(ToFloats(d_r.ToHost()), want_res, 1e-6, rtol), "")
            << "residual, hidden " << hidden;
      }
    }
  }
}

TYPED_TEST(ElementwiseTest, SiluMulMatchesReference) {
  using T = TypeParam;
  for (int inter : {18944, 37}) {
    const int n = 11;
    std::vector<float> in_f;
    auto in = RandomValues<T>(static_cast<size_t>(n) * 2 * inter, 6.0f, this->rng_, &in_f);
    DeviceBuffer<T> d_in(in), d_out(static_cast<size_t>(n) * inter);
    d_out.Poison();
    SiluMulParams<T> p;
    p.gate_up = d_in.get();
    p.out = d_out.get();
    p.num_tokens = n;
    p.intermediate_size = inter;
    KILN_CUDA_OK(SiluMul(p, nullptr));
    KILN_CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> twin(static_cast<size_t>(n) * inter);
    cpu::SiluMul(in_f.data(), n, inter, twin.data());
    const std::vector<double> want(twin.begin(), twin.end());
    EXPECT_EQ(CompareClose(ToFloats(d_out.ToHost()), want, 1e-5, testing::kRtol<T>), "")
        << "inter " << inter;
  }
}

struct RopeCase {
  int num_heads, num_kv_heads, head_dim;
  bool bias, qk_norm, interleaved;
  RopeScaling::Type scaling;
};

// The rotary table of a config with this head_dim and scaling, from the CPU twin.
RopeTable RopeTableFor(int head_dim, RopeScaling::Type type) {
  ModelConfig config;
  config.head_dim = head_dim;
  config.rope_theta = 500000.0;
  config.max_position_embeddings = 131072;
  config.rope_scaling.type = type;
  config.rope_scaling.factor = type == RopeScaling::Type::kYarn ? 4.0 : 8.0;
  config.rope_scaling.original_max_position_embeddings = 8192;
  return ComputeRopeTable(config);
}

TYPED_TEST(ElementwiseTest, RopeKvCacheMatchesReference) {
  using T = TypeParam;
  const RopeCase cases[] = {
      {28, 4, 128, true, false, false, RopeScaling::Type::kNone},    // Qwen2-7B
      {32, 8, 128, false, false, false, RopeScaling::Type::kLlama3}, // Llama-3.1-8B
      {16, 8, 128, false, true, false, RopeScaling::Type::kNone},    // Qwen3
      {8, 4, 8, false, false, false, RopeScaling::Type::kNone},      // stories260K
      {4, 2, 64, true, true, true, RopeScaling::Type::kYarn},        // interleaved, yarn scaling
      {6, 2, 256, false, false, false, RopeScaling::Type::kLinear},
  };
  const int n = 13, num_slots = 64;
  const float eps = 1e-6f;
  for (const RopeCase& c : cases) {
    const int D = c.head_dim, H = c.num_heads, Hkv = c.num_kv_heads;
    const int qkv_width = (H + 2 * Hkv) * D;  // fused [q | k | v] rows, as the QKV GEMM writes
    std::vector<float> qkv_f, qb_f, kb_f, vb_f, qn_f, kn_f;
    auto qkv = RandomValues<T>(static_cast<size_t>(n) * qkv_width, 2.0f, this->rng_, &qkv_f);
    auto qb = RandomValues<T>(H * D, 0.5f, this->rng_, &qb_f);
    auto kb = RandomValues<T>(Hkv * D, 0.5f, this->rng_, &kb_f);
    auto vb = RandomValues<T>(Hkv * D, 0.5f, this->rng_, &vb_f);
    auto qn = RandomValues<T>(D, 1.5f, this->rng_, &qn_f);
    auto kn = RandomValues<T>(D, 1.5f, this->rng_, &kn_f);
    std::vector<int32_t> positions(n);
    std::vector<int64_t> slots(n);
    std::uniform_int_distribution<int> pos_dist(0, 40000);
    std::vector<int> perm(num_slots);
    for (int i = 0; i < num_slots; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), this->rng_);
    for (int t = 0; t < n; ++t) {
      positions[t] = t == 0 ? 0 : pos_dist(this->rng_);
      slots[t] = perm[t];
    }
    slots[3] = -1;  // padding token: no cache write
    const RopeTable table = RopeTableFor(D, c.scaling);
    const std::vector<float>& inv_freq = table.inv_freq;
    DeviceBuffer<T> d_qkv(qkv), d_qb(qb), d_kb(kb), d_vb(vb), d_qn(qn), d_kn(kn);
    DeviceBuffer<int32_t> d_pos(positions);
    DeviceBuffer<int64_t> d_slots(slots);
    DeviceBuffer<float> d_inv(inv_freq);
    const size_t cache_size = static_cast<size_t>(num_slots) * Hkv * D;
    DeviceBuffer<T> d_kc(cache_size), d_vc(cache_size);
    d_kc.Poison();
    d_vc.Poison();
    RopeKvCacheParams<T> p;
    p.q = d_qkv.get();
    p.q_stride = qkv_width;
    p.k = d_qkv.get() + H * D;
    p.k_stride = qkv_width;
    p.v = d_qkv.get() + (H + Hkv) * D;
    p.v_stride = qkv_width;
    if (c.bias) {
      p.q_bias = d_qb.get();
      p.k_bias = d_kb.get();
      p.v_bias = d_vb.get();
    }
    if (c.qk_norm) {
      p.q_norm_weight = d_qn.get();
      p.k_norm_weight = d_kn.get();
    }
    p.norm_eps = eps;
    p.positions = d_pos.get();
    p.inv_freq = d_inv.get();
    p.attention_scaling = table.attention_scaling;
    p.interleaved = c.interleaved;
    p.slot_mapping = d_slots.get();
    p.k_cache = d_kc.get();
    p.v_cache = d_vc.get();
    p.num_tokens = n;
    p.num_heads = H;
    p.num_kv_heads = Hkv;
    p.head_dim = D;
    KILN_CUDA_OK(RopeKvCache(p, nullptr));
    KILN_CUDA_OK(cudaDeviceSynchronize());

    // Twin: bias (the CPU backend adds it in its GEMM) → cpu::HeadRmsNorm → cpu::ApplyRope →
    // cpu::WriteKvCache, in float32 on the same rounded inputs.
    std::vector<float> q_t(static_cast<size_t>(n) * H * D), k_t(static_cast<size_t>(n) * Hkv * D),
        v_t(static_cast<size_t>(n) * Hkv * D);
    for (int t = 0; t < n; ++t) {
      const float* row = qkv_f.data() + static_cast<size_t>(t) * qkv_width;
      for (int i = 0; i < H * D; ++i) q_t[t * H * D + i] = row[i] + (c.bias ? qb_f[i] : 0.0f);
      for (int i = 0; i < Hkv * D; ++i) {
        k_t[t * Hkv * D + i] = row[H * D + i] + (c.bias ? kb_f[i] : 0.0f);
        v_t[t * Hkv * D + i] = row[(H + Hkv) * D + i] + (c.bias ? vb_f[i] : 0.0f);
      }
    }
    if (c.qk_norm) {
      cpu::HeadRmsNorm(q_t.data(), qn_f.data(), n, H, D, eps);
      cpu::HeadRmsNorm(k_t.data(), kn_f.data(), n, Hkv, D, eps);
    }
    cpu::ApplyRope(q_t.data(), k_t.data(), positions.data(), n, H, Hkv, D, inv_freq.data(),
                   table.attention_scaling, c.interleaved);
    std::vector<float> kc_t(cache_size, std::nanf("")), vc_t(cache_size, std::nanf(""));
    cpu::WriteKvCache(k_t.data(), v_t.data(), slots.data(), n, Hkv, D, kc_t.data(), vc_t.data());
    std::vector<double> want_qkv(qkv_f.begin(), qkv_f.end());  // k, v columns stay untouched
    for (int t = 0; t < n; ++t) {
      for (int i = 0; i < H * D; ++i) want_qkv[t * qkv_width + i] = q_t[t * H * D + i];
    }
    const std::vector<double> want_kc(kc_t.begin(), kc_t.end()), want_vc(vc_t.begin(), vc_t.end());
    // The kernel must leave unwritten slots alone (still the NaN poison): compare only written
    // slots, and check that the padding token's would-be slot stayed untouched.
    auto written = [&](const std::vector<T>& cache, const std::vector<double>& want) {
      std::vector<float> got;
      std::vector<double> ref;
      const auto cache_f = ToFloats(cache);
      for (size_t i = 0; i < cache_f.size(); ++i) {
        if (std::isnan(want[i])) {
          EXPECT_TRUE(std::isnan(cache_f[i])) << "slot element " << i << " written unexpectedly";
          continue;
        }
        got.push_back(cache_f[i]);
        ref.push_back(want[i]);
      }
      return CompareClose(got, ref, 1e-4, testing::kRtol<T>);
    };
    const std::string label = "H " + std::to_string(H) + " D " + std::to_string(D) + " scaling " +
                              std::to_string(static_cast<int>(c.scaling));
    EXPECT_EQ(CompareClose(ToFloats(d_qkv.ToHost()), want_qkv, 1e-4, testing::kRtol<T>), "")
        << "q / untouched k,v input, " << label;
    EXPECT_EQ(written(d_kc.ToHost(), want_kc), "") << "k cache, " << label;
    EXPECT_EQ(written(d_vc.ToHost(), want_vc), "") << "v cache, " << label;
  }
}

}  // namespace
}  // namespace kiln::kernels
