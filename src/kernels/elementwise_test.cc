// Parity tests of the element-wise kernels (embedding, RMSNorm, SiLU-and-mul, RoPE + q/k norm +
// bias + KV-cache write) against float64 references of the cpu/ops.h semantics, on random inputs,
// for float and bf16. Skips when no GPU is present.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

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
class ElementwiseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = testing::GpuMissingReason();
    if (!reason.empty()) GTEST_SKIP() << reason;
  }
  std::mt19937 rng_{1234};
};

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
    std::vector<double> want(static_cast<size_t>(n) * hidden, 0.0);
    for (int t = 0; t < n; ++t) {
      if (ids[t] < 0 || ids[t] >= vocab) continue;
      for (int i = 0; i < hidden; ++i) want[t * hidden + i] = table_f[ids[t] * hidden + i];
    }
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
      std::vector<double> want(size), want_res(size);
      for (int t = 0; t < n; ++t) {
        double ss = 0;
        for (int i = 0; i < hidden; ++i) {
          double v = x_f[t * hidden + i];
          if (with_residual) {
            // The residual is stored in T, and the norm reads the stored value.
            v = testing::ToHostFloat(testing::FromHostFloat<T>(
                static_cast<float>(v) + r_f[t * hidden + i]));
          }
          want_res[t * hidden + i] = v;
          ss += v * v;
        }
        const double inv = 1.0 / std::sqrt(ss / hidden + eps);
        for (int i = 0; i < hidden; ++i) {
          want[t * hidden + i] = want_res[t * hidden + i] * inv * w_f[i];
        }
      }
      const double rtol = testing::kRtol<T>;
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
    std::vector<double> want(static_cast<size_t>(n) * inter);
    for (int t = 0; t < n; ++t) {
      for (int j = 0; j < inter; ++j) {
        const double g = in_f[t * 2 * inter + j], u = in_f[t * 2 * inter + inter + j];
        want[t * inter + j] = g / (1.0 + std::exp(-g)) * u;
      }
    }
    EXPECT_EQ(CompareClose(ToFloats(d_out.ToHost()), want, 1e-5, testing::kRtol<T>), "")
        << "inter " << inter;
  }
}

struct RopeCase {
  int num_heads, num_kv_heads, head_dim;
  bool bias, qk_norm, interleaved;
  float attention_scaling;
};

TYPED_TEST(ElementwiseTest, RopeKvCacheMatchesReference) {
  using T = TypeParam;
  const RopeCase cases[] = {
      {28, 4, 128, true, false, false, 1.0f},   // Qwen2-7B
      {16, 8, 128, false, true, false, 1.0f},   // Qwen3
      {8, 4, 8, false, false, false, 1.0f},     // stories260K
      {4, 2, 64, true, true, true, 1.2f},       // interleaved, yarn-like scaling
      {6, 2, 256, false, false, false, 1.0f},
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
    std::vector<float> inv_freq(D / 2);
    for (int i = 0; i < D / 2; ++i) {
      inv_freq[i] = static_cast<float>(1.0 / std::pow(1e6, 2.0 * i / D));
    }
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
    p.attention_scaling = c.attention_scaling;
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

    // Reference: bias → head norm → rotate, float64 except the float32 angle (as HF).
    auto transform = [&](const float* x, const float* bias, const float* norm, bool rotate,
                         int pos, double* out) {
      std::vector<double> v(D);
      for (int i = 0; i < D; ++i) v[i] = x[i] + (bias != nullptr ? bias[i] : 0.0);
      if (norm != nullptr) {
        double ss = 0;
        for (double e : v) ss += e * e;
        const double inv = 1.0 / std::sqrt(ss / D + eps);
        for (int i = 0; i < D; ++i) v[i] = v[i] * inv * norm[i];
      }
      for (int i = 0; i < D; ++i) out[i] = v[i];
      if (!rotate) return;
      for (int i = 0; i < D / 2; ++i) {
        const int ia = c.interleaved ? 2 * i : i;
        const int ib = c.interleaved ? 2 * i + 1 : i + D / 2;
        const float angle = static_cast<float>(pos) * inv_freq[i];
        const double co = std::cos(static_cast<double>(angle)) * c.attention_scaling;
        const double si = std::sin(static_cast<double>(angle)) * c.attention_scaling;
        out[ia] = v[ia] * co - v[ib] * si;
        out[ib] = v[ib] * co + v[ia] * si;
      }
    };
    std::vector<double> want_qkv(qkv_f.begin(), qkv_f.end());
    std::vector<double> want_kc(cache_size, std::nan("")), want_vc(cache_size, std::nan(""));
    for (int t = 0; t < n; ++t) {
      const float* row = qkv_f.data() + static_cast<size_t>(t) * qkv_width;
      for (int h = 0; h < H; ++h) {
        transform(row + h * D, c.bias ? qb_f.data() + h * D : nullptr,
                  c.qk_norm ? qn_f.data() : nullptr, true, positions[t],
                  want_qkv.data() + static_cast<size_t>(t) * qkv_width + h * D);
      }
      if (slots[t] < 0) continue;
      for (int h = 0; h < Hkv; ++h) {
        const size_t dst = (static_cast<size_t>(slots[t]) * Hkv + h) * D;
        transform(row + (H + h) * D, c.bias ? kb_f.data() + h * D : nullptr,
                  c.qk_norm ? kn_f.data() : nullptr, true, positions[t], want_kc.data() + dst);
        transform(row + (H + Hkv + h) * D, c.bias ? vb_f.data() + h * D : nullptr, nullptr,
                  false, positions[t], want_vc.data() + dst);
      }
    }
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
    const std::string label = "H " + std::to_string(H) + " D " + std::to_string(D);
    EXPECT_EQ(CompareClose(ToFloats(d_qkv.ToHost()), want_qkv, 1e-4, testing::kRtol<T>), "")
        << "q / untouched k,v input, " << label;
    EXPECT_EQ(written(d_kc.ToHost(), want_kc), "") << "k cache, " << label;
    EXPECT_EQ(written(d_vc.ToHost(), want_vc), "") << "v cache, " << label;
  }
}

}  // namespace
}  // namespace kiln::kernels
