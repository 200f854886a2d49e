// Parity tests of kernels::Gemv's batch-1 fusions (gemv.h: the add+RMSNorm prologue, the SiLU·mul
// and RoPE epilogues) on random inputs. Each fused call must match the unfused chain it replaces
// in the decode step (RmsNorm with a residual, then Gemv; Gemv, then SiluMul or RopeKvCache): the
// residual it stores and the normalized x bit for bit, the products up to float32 summation order
// (the plain 1-row Gemv splits each row over four warps, the fused kernels do not: a bf16 output
// may land on the neighbouring value), and close to a float64 CPU evaluation of the same chain;
// the residual ping-pong must hold when fused calls follow each other with programmatic
// dependent launch, and bad arguments are refused. Skips when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "kernels/gemv.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/test_util.h"

namespace kiln::kernels {
namespace {

using testing::CompareClose;
using testing::DeviceBuffer;
using testing::RandomValues;
using testing::ToFloats;

using Bf16 = __nv_bfloat16;

float RoundBf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

bool SameBits(const std::vector<Bf16>& a, const std::vector<Bf16>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(Bf16)) == 0;
}

size_t CountDiffs(const std::vector<Bf16>& a, const std::vector<Bf16>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(Bf16)) != 0;
  return n;
}

// The fused result `got` against the unfused chain's `want`, which differ only in the float32
// summation order of the dot products: each element within two bf16 steps of want (or of the
// vector's largest magnitude / 16, where a rotation or SiLU·mul cancels), and at most 2% of the
// elements different at all (a rounding flip, not a systematic error). Empty when they match.
std::string ChainMismatch(const std::vector<Bf16>& got, const std::vector<Bf16>& want) {
  if (got.size() != want.size()) return "size differs";
  float max_abs = 0;
  for (const Bf16& w : want) max_abs = std::max(max_abs, std::fabs(__bfloat162float(w)));
  const size_t diffs = CountDiffs(got, want);
  for (size_t i = 0; i < got.size(); ++i) {
    const float g = __bfloat162float(got[i]), w = __bfloat162float(want[i]);
    if (!(std::fabs(g - w) <= 0x1p-7f * (std::fabs(w) + max_abs / 16))) {
      return "element " + std::to_string(i) + ": " + std::to_string(g) + " vs the chain's " +
             std::to_string(w);
    }
  }
  if (diffs * 50 > got.size()) {
    return std::to_string(diffs) + " of " + std::to_string(got.size()) + " elements differ";
  }
  return "";
}

// y = W x (+ bias) in float64 from float inputs; also the largest sum of |products| (tolerance).
std::vector<double> CpuGemv(const std::vector<float>& x, const std::vector<float>& w,
                            const std::vector<float>* bias, int64_t out, int64_t in,
                            double* max_abs_sum) {
  std::vector<double> y(out);
  *max_abs_sum = 0;
  for (int64_t o = 0; o < out; ++o) {
    double sum = bias ? (*bias)[o] : 0.0, abs_sum = 0;
    for (int64_t i = 0; i < in; ++i) {
      sum += static_cast<double>(x[i]) * w[o * in + i];
      abs_sum += std::fabs(static_cast<double>(x[i]) * w[o * in + i]);
    }
    y[o] = sum;
    *max_abs_sum = std::max(*max_abs_sum, abs_sum);
  }
  return y;
}

class GemvPrologueTest : public testing::GpuTest {
 protected:
  // Fused add (optional) + RMSNorm + GEMV against RmsNorm → Gemv on the same inputs.
  void CheckAddRmsNorm(int64_t out, int64_t in, bool with_addend, bool with_bias) {
    SCOPED_TRACE(::testing::Message() << "out=" << out << " in=" << in << " addend=" << with_addend
                                      << " bias=" << with_bias);
    std::vector<float> af, rf, nwf, wf, bf;
    auto a = RandomValues<Bf16>(in, 2.0f, rng_, &af);
    auto r = RandomValues<Bf16>(in, 2.0f, rng_, &rf);
    auto nw = RandomValues<Bf16>(in, 1.5f, rng_, &nwf);
    auto w = RandomValues<Bf16>(out * in, 0.1f, rng_, &wf);
    auto b = RandomValues<Bf16>(out, 1.0f, rng_, &bf);
    DeviceBuffer<Bf16> da(a), dr(r), dr_chain(r), dr_out(in), dnw(nw), dw(w), db(b);
    DeviceBuffer<Bf16> dnormed(in), dy_chain(out), dy(out);
    const float eps = 1e-6f;

    RmsNormParams<Bf16> norm;
    norm.x = with_addend ? da.get() : dr_chain.get();
    norm.residual = with_addend ? dr_chain.get() : nullptr;
    norm.weight = dnw.get();
    norm.out = dnormed.get();
    norm.num_tokens = 1;
    norm.hidden_size = static_cast<int>(in);
    norm.eps = eps;
    KILN_CUDA_OK(RmsNorm(norm, nullptr));
    GemvParams<Bf16> chain;
    chain.x = dnormed.get();
    chain.w = dw.get();
    chain.bias = with_bias ? db.get() : nullptr;
    chain.y = dy_chain.get();
    chain.rows = 1;
    chain.out_features = out;
    chain.in_features = in;
    KILN_CUDA_OK(Gemv(chain, nullptr));

    GemvParams<Bf16> p = chain;
    p.x = nullptr;
    p.y = dy.get();
    p.prologue.kind = GemvPrologue::kAddRmsNorm;
    p.prologue.addend = with_addend ? da.get() : nullptr;
    p.prologue.residual = dr.get();
    p.prologue.residual_out = with_addend ? dr_out.get() : nullptr;
    p.prologue.norm_weight = dnw.get();
    p.prologue.eps = eps;
    dy.Poison();
    dr_out.Poison();
    KILN_CUDA_OK(Gemv(p, nullptr));
    KILN_CUDA_OK(cudaDeviceSynchronize());

    const auto y = dy.ToHost(), y_chain = dy_chain.ToHost();
    EXPECT_EQ(ChainMismatch(y, y_chain), "");
    EXPECT_TRUE(SameBits(dr.ToHost(), r)) << "the input residual was modified";
    if (with_addend) {
      const auto r_out = dr_out.ToHost(), r_chain = dr_chain.ToHost();
      EXPECT_TRUE(SameBits(r_out, r_chain)) << CountDiffs(r_out, r_chain) << " residuals differ";
    }

    // CPU twin of the chain: r' = bf16(a + r); x = bf16(r' / rms(r') · w_norm); y = W x + b.
    std::vector<float> sum(in), x(in);
    double sum_sq = 0;
    for (int64_t i = 0; i < in; ++i) {
      sum[i] = with_addend ? RoundBf16(af[i] + rf[i]) : rf[i];
      sum_sq += static_cast<double>(sum[i]) * sum[i];
    }
    const double inv_rms = 1.0 / std::sqrt(sum_sq / in + eps);
    for (int64_t i = 0; i < in; ++i)
      x[i] = RoundBf16(static_cast<float>(sum[i] * inv_rms * nwf[i]));
    double max_abs_sum = 0;
    const auto want = CpuGemv(x, wf, with_bias ? &bf : nullptr, out, in, &max_abs_sum);
    // bf16 output; x may differ from the CPU's by one bf16 rounding step where the float32 sum of
    // squares rounds the other way: allow that on top of the float32 accumulation error.
    EXPECT_EQ(
        CompareClose(ToFloats(y), want, 1e-2 * max_abs_sum / std::sqrt(in) + 1e-5 * max_abs_sum,
                     testing::kRtol<Bf16>),
        "");
  }

  // The unfused chain's first launch: add+RMSNorm of (a, residual) into `normed` when with_norm
  // (its params in *norm), and the GEMV params that read `normed` (or x without the norm).
  static GemvParams<Bf16> NormThenGemv(bool with_norm, Bf16* a, Bf16* residual,
                                       const Bf16* norm_weight, Bf16* normed, const Bf16* x,
                                       const Bf16* w, int64_t in, RmsNormParams<Bf16>* norm) {
    norm->x = a;
    norm->residual = residual;
    norm->weight = norm_weight;
    norm->out = normed;
    norm->num_tokens = 1;
    norm->hidden_size = static_cast<int>(in);
    if (with_norm) EXPECT_EQ(RmsNorm(*norm, nullptr), cudaSuccess);
    GemvParams<Bf16> chain;
    chain.x = with_norm ? normed : x;
    chain.w = w;
    return chain;
  }

  // Gemv with the SiLU·mul epilogue (optionally after the add+RMSNorm prologue) against
  // [RmsNorm →] Gemv → SiluMul: y[j] = silu(gate_j) · up_j, I = inter pairs of rows.
  void CheckSiluEpilogue(int64_t inter, int64_t in, bool with_norm, bool with_bias) {
    SCOPED_TRACE(::testing::Message() << "inter=" << inter << " in=" << in << " norm=" << with_norm
                                      << " bias=" << with_bias);
    const int64_t out = 2 * inter;
    std::vector<float> xf, af, rf, nwf, wf, bf;
    auto x = RandomValues<Bf16>(in, 1.0f, rng_, &xf);
    auto a = RandomValues<Bf16>(in, 2.0f, rng_, &af);
    auto r = RandomValues<Bf16>(in, 2.0f, rng_, &rf);
    auto nw = RandomValues<Bf16>(in, 1.5f, rng_, &nwf);
    auto w = RandomValues<Bf16>(out * in, 0.2f, rng_, &wf);
    auto b = RandomValues<Bf16>(out, 1.0f, rng_, &bf);
    DeviceBuffer<Bf16> dx(x), da(a), dr(r), dr_chain(r), dr_out(in), dnw(nw), dw(w), db(b);
    DeviceBuffer<Bf16> dnormed(in), dgu(out), dy_chain(inter), dy(inter);
    RmsNormParams<Bf16> norm;
    GemvParams<Bf16> chain = NormThenGemv(with_norm, da.get(), dr_chain.get(), dnw.get(),
                                          dnormed.get(), dx.get(), dw.get(), in, &norm);
    chain.bias = with_bias ? db.get() : nullptr;
    chain.y = dgu.get();
    chain.rows = 1;
    chain.out_features = out;
    chain.in_features = in;
    KILN_CUDA_OK(Gemv(chain, nullptr));
    SiluMulParams<Bf16> silu;
    silu.gate_up = dgu.get();
    silu.out = dy_chain.get();
    silu.num_tokens = 1;
    silu.intermediate_size = static_cast<int>(inter);
    KILN_CUDA_OK(SiluMul(silu, nullptr));

    GemvParams<Bf16> p = chain;
    p.y = dy.get();
    p.silu_mul_epilogue = true;
    if (with_norm) {
      p.x = nullptr;
      p.prologue.kind = GemvPrologue::kAddRmsNorm;
      p.prologue.addend = da.get();
      p.prologue.residual = dr.get();
      p.prologue.residual_out = dr_out.get();
      p.prologue.norm_weight = dnw.get();
    }
    dy.Poison();
    KILN_CUDA_OK(Gemv(p, nullptr));
    KILN_CUDA_OK(cudaDeviceSynchronize());
    const auto y = dy.ToHost(), y_chain = dy_chain.ToHost();
    EXPECT_EQ(ChainMismatch(y, y_chain), "");
    if (with_norm) EXPECT_TRUE(SameBits(dr_out.ToHost(), dr_chain.ToHost()));

    // CPU twin (plain x only): g, u = bf16(W x + b); y = bf16(silu(g) · u).
    if (!with_norm) {
      double max_abs_sum = 0;
      const auto gu = CpuGemv(xf, wf, with_bias ? &bf : nullptr, out, in, &max_abs_sum);
      std::vector<double> want(inter);
      for (int64_t j = 0; j < inter; ++j) {
        const double g = RoundBf16(static_cast<float>(gu[j]));
        const double u = RoundBf16(static_cast<float>(gu[inter + j]));
        want[j] = g / (1.0 + std::exp(-g)) * u;
      }
      // g and u may each round to a neighbouring bf16: one bf16 step of either, relative.
      EXPECT_EQ(CompareClose(ToFloats(y), want, 1e-5 * max_abs_sum * max_abs_sum + 1e-4,
                             4 * testing::kRtol<Bf16>),
                "");
    }
  }

  // Gemv with the RoPE + KV-cache epilogue (optionally after the add+RMSNorm prologue) against
  // [RmsNorm →] Gemv → RopeKvCache: q part of y and both caches bit-identical.
  void CheckRope(int heads, int kv_heads, int dim, int64_t in, bool with_norm, int64_t slot,
                 float scaling) {
    SCOPED_TRACE(::testing::Message() << "heads=" << heads << "/" << kv_heads << " dim=" << dim
                                      << " in=" << in << " norm=" << with_norm << " slot=" << slot);
    const int64_t out = static_cast<int64_t>(heads + 2 * kv_heads) * dim;
    const int64_t slots = 8, cache = slots * kv_heads * dim;
    std::vector<float> xf, af, rf, nwf, wf, bf, unused;
    auto x = RandomValues<Bf16>(in, 1.0f, rng_, &xf);
    auto a = RandomValues<Bf16>(in, 2.0f, rng_, &af);
    auto r = RandomValues<Bf16>(in, 2.0f, rng_, &rf);
    auto nw = RandomValues<Bf16>(in, 1.5f, rng_, &nwf);
    auto w = RandomValues<Bf16>(out * in, 0.1f, rng_, &wf);
    auto b = RandomValues<Bf16>(out, 1.0f, rng_, &bf);
    auto kc0 = RandomValues<Bf16>(cache, 1.0f, rng_, &unused);
    auto vc0 = RandomValues<Bf16>(cache, 1.0f, rng_, &unused);
    std::vector<float> inv_freq(dim / 2);
    for (int i = 0; i < dim / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / dim);
    const std::vector<int32_t> pos = {1234};
    const std::vector<int64_t> slot_map = {slot};
    DeviceBuffer<Bf16> dx(x), da(a), dr(r), dr_chain(r), dr_out(in), dnw(nw), dw(w), db(b);
    DeviceBuffer<Bf16> dnormed(in), dy_chain(out), dy(out);
    DeviceBuffer<Bf16> kc_chain(kc0), vc_chain(vc0), kc(kc0), vc(vc0);
    DeviceBuffer<float> dfreq(inv_freq);
    DeviceBuffer<int32_t> dpos(pos);
    DeviceBuffer<int64_t> dslot(slot_map);

    RmsNormParams<Bf16> norm;
    GemvParams<Bf16> chain = NormThenGemv(with_norm, da.get(), dr_chain.get(), dnw.get(),
                                          dnormed.get(), dx.get(), dw.get(), in, &norm);
    chain.bias = db.get();
    chain.y = dy_chain.get();
    chain.rows = 1;
    chain.out_features = out;
    chain.in_features = in;
    KILN_CUDA_OK(Gemv(chain, nullptr));
    RopeKvCacheParams<Bf16> rope;
    rope.q = dy_chain.get();
    rope.q_stride = out;
    rope.k = dy_chain.get() + heads * dim;
    rope.k_stride = out;
    rope.v = dy_chain.get() + (heads + kv_heads) * dim;
    rope.v_stride = out;
    rope.positions = dpos.get();
    rope.inv_freq = dfreq.get();
    rope.attention_scaling = scaling;
    rope.slot_mapping = dslot.get();
    rope.k_cache = kc_chain.get();
    rope.v_cache = vc_chain.get();
    rope.num_tokens = 1;
    rope.num_heads = heads;
    rope.num_kv_heads = kv_heads;
    rope.head_dim = dim;
    KILN_CUDA_OK(RopeKvCache(rope, nullptr));

    GemvParams<Bf16> p = chain;
    p.y = dy.get();
    if (with_norm) {
      p.x = nullptr;
      p.prologue.kind = GemvPrologue::kAddRmsNorm;
      p.prologue.addend = da.get();
      p.prologue.residual = dr.get();
      p.prologue.residual_out = dr_out.get();
      p.prologue.norm_weight = dnw.get();
    }
    p.rope.enabled = true;
    p.rope.num_heads = heads;
    p.rope.num_kv_heads = kv_heads;
    p.rope.head_dim = dim;
    p.rope.positions = dpos.get();
    p.rope.inv_freq = dfreq.get();
    p.rope.attention_scaling = scaling;
    p.rope.slot_mapping = dslot.get();
    p.rope.k_cache = kc.get();
    p.rope.v_cache = vc.get();
    dy.Poison();
    KILN_CUDA_OK(Gemv(p, nullptr));
    KILN_CUDA_OK(cudaDeviceSynchronize());
    auto y = dy.ToHost(), y_chain = dy_chain.ToHost();
    y.resize(heads * dim);  // the q part; k and v go to the caches only
    y_chain.resize(heads * dim);
    EXPECT_EQ(ChainMismatch(y, y_chain), "") << "q";
    const auto k = kc.ToHost(), k_chain = kc_chain.ToHost();
    const auto v = vc.ToHost(), v_chain = vc_chain.ToHost();
    EXPECT_EQ(ChainMismatch(k, k_chain), "") << "k cache";
    EXPECT_EQ(ChainMismatch(v, v_chain), "") << "v cache";
    if (slot < 0) EXPECT_TRUE(SameBits(k, kc0) && SameBits(v, vc0)) << "padding wrote the cache";
    if (slot >= 0) EXPECT_FALSE(SameBits(k, kc0)) << "the k cache was not written";
  }
};

TEST_F(GemvPrologueTest, AddRmsNormMatchesUnfusedChain) {
  for (bool addend : {false, true}) {
    CheckAddRmsNorm(37, 64, addend, false);         // RmsNorm launches 64 threads
    CheckAddRmsNorm(301, 1024, addend, true);       // 64 threads, 4 vectors each
    CheckAddRmsNorm(4608, 3584, addend, true);      // Qwen2-7B qkv (128 threads)
    CheckAddRmsNorm(1001, 4096, addend, false);     // 128 threads, the exact limit
    CheckAddRmsNorm(999, 3584 * 3, addend, false);  // wider: own norm order too
  }
}

TEST_F(GemvPrologueTest, SiluMulEpilogueMatchesUnfusedChain) {
  for (bool bias : {false, true}) {
    CheckSiluEpilogue(37, 64, false, bias);
    CheckSiluEpilogue(37, 64, true, bias);
    CheckSiluEpilogue(1001, 3584, false, bias);
    CheckSiluEpilogue(18944, 3584, true, bias);  // Qwen2-7B gate_up
  }
}

TEST_F(GemvPrologueTest, RopeEpilogueMatchesUnfusedChain) {
  CheckRope(4, 2, 64, 64, false, 3, 1.0f);
  CheckRope(4, 2, 64, 64, true, 5, 1.25f);
  CheckRope(4, 2, 64, 64, false, -1, 1.0f);    // padding token: no cache write
  CheckRope(28, 4, 128, 3584, true, 7, 1.0f);  // Qwen2-7B qkv
  CheckRope(28, 4, 128, 3584, false, 0, 1.0f);
}

// Decode-like chain of fused calls with PDL launches back to back, the residual alternating
// between two buffers (as CudaBackend does), against the same calls with a synchronize after
// every launch: bit-identical. A block reading a residual another block already overwrote, or a
// prologue reading before PdlWait, would differ. (Each fused call against its unfused chain is
// checked above.)
TEST_F(GemvPrologueTest, PingPongChainMatchesSerializedChain) {
  constexpr int64_t kH = 2048, kOut = 2048;
  constexpr int kSteps = 6;
  std::vector<float> unused;
  auto r0 = RandomValues<Bf16>(kH, 1.0f, rng_, &unused);
  auto nw = RandomValues<Bf16>(kH, 1.0f, rng_, &unused);
  std::vector<DeviceBuffer<Bf16>> ws;
  for (int s = 0; s < kSteps; ++s) {
    ws.emplace_back(RandomValues<Bf16>(kOut * kH, 0.05f, rng_, &unused));
  }
  DeviceBuffer<Bf16> dnw(nw);

  // x_{s+1} = W_s · RmsNorm(r += x_s); r starts as r0, x_0 = none (plain norm). x alternates
  // too, since a GEMV may not overwrite its own addend. Returns the last x and r.
  auto run = [&](bool serialized, std::vector<Bf16>* x_last, std::vector<Bf16>* r_last) {
    DeviceBuffer<Bf16> ra(r0), rb(kH), xa(kH), xb(kH);
    Bf16* cur = ra.get();
    Bf16* spare = rb.get();
    Bf16* x_in = nullptr;
    Bf16* x_out = xa.get();
    cudaStream_t stream;
    KILN_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    for (int s = 0; s < kSteps; ++s) {
      GemvParams<Bf16> g;
      g.w = ws[s].get();
      g.y = x_out;
      g.rows = 1;
      g.out_features = kOut;
      g.in_features = kH;
      g.prologue.kind = GemvPrologue::kAddRmsNorm;
      g.prologue.addend = x_in;
      g.prologue.residual = cur;
      g.prologue.norm_weight = dnw.get();
      if (x_in != nullptr) {
        g.prologue.residual_out = spare;
        std::swap(cur, spare);
      }
      KILN_CUDA_OK(Gemv(g, stream));
      if (serialized) KILN_CUDA_OK(cudaStreamSynchronize(stream));
      x_in = x_out;
      x_out = x_out == xa.get() ? xb.get() : xa.get();
    }
    KILN_CUDA_OK(cudaStreamSynchronize(stream));
    KILN_CUDA_OK(cudaStreamDestroy(stream));
    x_last->resize(kH);
    r_last->resize(kH);
    KILN_CUDA_OK(cudaMemcpy(x_last->data(), x_in, kH * sizeof(Bf16), cudaMemcpyDeviceToHost));
    KILN_CUDA_OK(cudaMemcpy(r_last->data(), cur, kH * sizeof(Bf16), cudaMemcpyDeviceToHost));
  };
  std::vector<Bf16> x_serial, r_serial, x_pdl, r_pdl;
  run(true, &x_serial, &r_serial);
  run(false, &x_pdl, &r_pdl);
  EXPECT_TRUE(SameBits(x_pdl, x_serial)) << CountDiffs(x_pdl, x_serial) << " of x differ";
  EXPECT_TRUE(SameBits(r_pdl, r_serial)) << CountDiffs(r_pdl, r_serial) << " of r differ";
  EXPECT_FALSE(SameBits(r_pdl, r0)) << "the residual never changed";
}

TEST_F(GemvPrologueTest, RejectsBadArguments) {
  DeviceBuffer<Bf16> a(256), r(256), r_out(256), nw(256), w(16 * 256), y(16), g(512);
  GemvParams<Bf16> p;
  p.w = w.get();
  p.y = y.get();
  p.rows = 1;
  p.out_features = 16;
  p.in_features = 256;
  p.prologue.kind = GemvPrologue::kAddRmsNorm;
  p.prologue.addend = a.get();
  p.prologue.residual = r.get();
  p.prologue.residual_out = r_out.get();
  p.prologue.norm_weight = nw.get();
  EXPECT_EQ(Gemv(p, nullptr), cudaSuccess);
  p.rows = 2;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "2 rows";
  p.rows = 1;
  p.prologue.residual_out = r.get();
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "residual_out aliases residual";
  p.prologue.residual_out = nullptr;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "addend without residual_out";
  p.prologue.residual_out = r_out.get();
  p.prologue.norm_weight = nullptr;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "no norm weight";
  p.prologue.norm_weight = nw.get();
  p.in_features = 252;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "in_features % 8";
  p.in_features = kGemvPrologueMaxFeatures + 8;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "too wide for shared memory";
  p.in_features = 256;
  p.y = a.get();
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "y aliases the addend";
  p.y = y.get();
  p.prologue.residual = r.get() + 1;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "unaligned residual";
  p.prologue.residual = r.get();
  p.silu_mul_epilogue = true;
  EXPECT_EQ(Gemv(p, nullptr), cudaSuccess) << "prologue + epilogue";
  p.out_features = 15;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "odd rows with the SiLU epilogue";
  p.out_features = 16;
  p.prologue = GemvPrologueParams{};
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "epilogue without x";
  p.x = a.get();
  p.y = g.get();
  EXPECT_EQ(Gemv(p, nullptr), cudaSuccess) << "epilogue alone";
  p.rows = 2;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "epilogue with 2 rows";
  p.rows = 1;
  DeviceBuffer<float> freq(8);
  DeviceBuffer<int32_t> pos(1);
  DeviceBuffer<int64_t> slot(1);
  p.silu_mul_epilogue = false;
  p.y = y.get();
  p.rope.enabled = true;
  p.rope.num_heads = 2;
  p.rope.num_kv_heads = 1;
  p.rope.head_dim = 4;  // (2 + 2 · 1) · 4 = 16 rows
  p.rope.positions = pos.get();
  p.rope.inv_freq = freq.get();
  p.rope.slot_mapping = slot.get();
  p.rope.k_cache = r.get();
  p.rope.v_cache = r_out.get();
  KILN_CUDA_OK(cudaMemset(slot.get(), 0xff, sizeof(int64_t)));  // slot -1: no cache write
  EXPECT_EQ(Gemv(p, nullptr), cudaSuccess) << "RoPE epilogue";
  p.rope.num_heads = 3;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "heads do not add up to out_features";
  p.rope.num_heads = 2;
  p.rope.inv_freq = nullptr;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "no inv_freq";
  p.rope.inv_freq = freq.get();
  p.silu_mul_epilogue = true;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "RoPE and SiLU epilogues together";
  p.silu_mul_epilogue = false;
  GemvParams<float> pf;
  DeviceBuffer<float> yf(16);
  pf.x = a.get();
  pf.w = w.get();
  pf.y = yf.get();
  pf.rows = 1;
  pf.out_features = 16;
  pf.in_features = 256;
  pf.rope = p.rope;
  EXPECT_EQ(Gemv(pf, nullptr), cudaErrorInvalidValue) << "RoPE epilogue with float32 output";
  KILN_CUDA_OK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace kiln::kernels
