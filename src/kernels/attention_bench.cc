// kernels_bench: attention kernel figures against the card's limits, printed as a table.
//  1. device-to-device copy bandwidth (bytes read + written), the decode limit;
//  2. (printed last) causal prefill attention, one 8,192-token sequence, Qwen2-7B heads (28 q, 4
//  kv, head_dim
//     128), bf16, paged (block_size 16, shuffled blocks): TFLOP/s (4·S²/2·D·H FLOPs, the
//     FlashAttention convention) for each tensor-core tile shape and the dispatcher's choice;
//     then a batch of 4 × 2,048 and 16 × 512 prompts and a 2,048-token chunk over a 6,144-token
//     cached prefix (cp.async wgmma kernel, TMA kernel, dispatcher);
//  3. (printed first) decode attention, batch 64 × 2,000-token contexts, same heads: GB/s of K/V
//  read vs copy.
// Each figure is the median of timed repetitions after warm-up, timed with CUDA events.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/attention_variants.h"
#include "kernels/bench_util.h"

namespace {

using kiln::kernels::PagedAttentionParams;
using bf16 = __nv_bfloat16;

// Median milliseconds of `reps` runs of fn after `warmup` runs.
double MedianMs(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  CHECK_CUDA(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    CHECK_CUDA(cudaEventRecord(start));
    fn();
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float t = 0;
    CHECK_CUDA(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

template <typename T>
T* DeviceRandom(size_t n, std::mt19937& rng) {
  std::vector<bf16> host(n);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& x : host) x = __float2bfloat16_rn(dist(rng));
  T* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, n * sizeof(T)));
  CHECK_CUDA(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  return ptr;
}

template <typename T>
T* DeviceCopy(const std::vector<T>& host) {
  T* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, host.size() * sizeof(T)));
  CHECK_CUDA(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return ptr;
}

struct Batch {
  PagedAttentionParams<bf16> params;
  std::vector<void*> owned;
  ~Batch() {
    for (void* p : owned) cudaFree(p);
  }
};

// num_seqs sequences of seq_len tokens each, q_len new tokens each; Qwen2-7B heads.
void MakeBatch(int num_seqs, int seq_len, int q_len, std::mt19937& rng, Batch* b) {
  const int H = 28, Hkv = 4, D = 128, bs = 16;
  const int blocks_per_seq = (seq_len + bs - 1) / bs;
  const int num_blocks = num_seqs * blocks_per_seq;
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> cu(num_seqs + 1), lens(num_seqs, seq_len);
  for (int i = 0; i <= num_seqs; ++i) cu[i] = i * q_len;
  const int num_tokens = num_seqs * q_len;
  const size_t cache = static_cast<size_t>(num_blocks) * bs * Hkv * D;
  auto& p = b->params;
  bf16* q = DeviceRandom<bf16>(static_cast<size_t>(num_tokens) * H * D, rng);
  bf16* k = DeviceRandom<bf16>(cache, rng);
  bf16* v = DeviceRandom<bf16>(cache, rng);
  bf16* out = nullptr;
  CHECK_CUDA(cudaMalloc(&out, static_cast<size_t>(num_tokens) * H * D * sizeof(bf16)));
  int32_t* d_cu = DeviceCopy(cu);
  int32_t* d_lens = DeviceCopy(lens);
  int32_t* d_tables = DeviceCopy(perm);
  const size_t ws_bytes = kiln::kernels::PagedAttentionWorkspaceSize(
      num_tokens, H, D, num_tokens <= 256 ? kiln::kernels::kMaxKvSplits : 1);
  float* ws = nullptr;
  CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
  b->owned = {q, k, v, out, d_cu, d_lens, d_tables, ws};
  p.q = q;
  p.q_stride = H * D;
  p.k_cache = k;
  p.v_cache = v;
  p.out = out;
  p.out_stride = H * D;
  p.cu_seqlens_q = d_cu;
  p.seq_lens = d_lens;
  p.block_tables = d_tables;
  p.max_blocks_per_seq = blocks_per_seq;
  p.num_seqs = num_seqs;
  p.num_tokens = num_tokens;
  p.num_heads = H;
  p.num_kv_heads = Hkv;
  p.head_dim = D;
  p.block_size = bs;
  p.max_seqlen_q = q_len;
  p.max_seq_len = seq_len;
  p.scale = 1.0f / std::sqrt(static_cast<float>(D));
  p.workspace = ws;
  p.workspace_size_bytes = ws_bytes;
}

}  // namespace

int main(int argc, char** argv) {
  // --profile: run the dispatcher's prefill and decode once each (for ncu), no timing.
  const bool profile = argc > 1 && std::string(argv[1]) == "--profile";
  int device = 0;
  CHECK_CUDA(cudaGetDevice(&device));
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, device));
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  std::mt19937 rng(7);
  if (profile) {
    Batch prefill, decode;
    MakeBatch(1, 8192, 8192, rng, &prefill);
    MakeBatch(64, 2000, 1, rng, &decode);
    CHECK_CUDA(kiln::kernels::PagedAttention(prefill.params, nullptr));
    CHECK_CUDA(kiln::kernels::PagedAttention(decode.params, nullptr));
    CHECK_CUDA(cudaDeviceSynchronize());
    return 0;
  }

  // 1. Copy bandwidth.
  const size_t copy_bytes = size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  CHECK_CUDA(cudaMalloc(&src, copy_bytes));
  CHECK_CUDA(cudaMalloc(&dst, copy_bytes));
  CHECK_CUDA(cudaMemset(src, 1, copy_bytes));
  const double copy_ms = MedianMs(
      [&] { CHECK_CUDA(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice)); }, 3, 20);
  const double copy_gbs = 2.0 * copy_bytes / (copy_ms * 1e-3) / 1e9;
  CHECK_CUDA(cudaFree(src));
  CHECK_CUDA(cudaFree(dst));

  // 3. Decode, batch 64 x 2000.
  std::printf("\n%-44s %10s %12s %s %.0f GB/s\n", "decode 64 x 2000, 28q/4kv x 128, bf16", "us",
              "GB/s", "vs copy", copy_gbs);
  {
    Batch b;
    const int batch = 64, ctx = 2000;
    MakeBatch(batch, ctx, 1, rng, &b);
    const double bytes = 2.0 * batch * ctx * 4 * 128 * 2 + 2.0 * batch * 28 * 128 * 2;
    auto row = [&](const char* name, double ms) {
      std::printf("%-44s %10.1f %12.0f %6.0f%%\n", name, ms * 1e3, bytes / (ms * 1e-3) / 1e9,
                  100.0 * bytes / (ms * 1e-3) / 1e9 / copy_gbs);
    };
    for (bool tensor_cores : {true, false}) {
      for (int splits : {0, 1, 2, 4}) {
        if (!tensor_cores && splits != 0) continue;
        b.params.num_kv_splits = splits;
        const double ms = MedianMs(
            [&] {
              CHECK_CUDA(
                  kiln::kernels::PagedAttentionDecodeVariant(b.params, tensor_cores, nullptr));
            },
            3, 20);
        char name[64];
        std::snprintf(name, sizeof(name), "%s, splits %s%d",
                      tensor_cores ? "mma.sync decode" : "CUDA-core rows",
                      splits == 0 ? "auto " : "", splits);
        row(name, ms);
      }
    }
    b.params.num_kv_splits = 0;
    row("PagedAttention (dispatcher)",
        MedianMs([&] { CHECK_CUDA(kiln::kernels::PagedAttention(b.params, nullptr)); }, 3, 20));
  }
  {
    Batch b;
    const int batch = 1, ctx = 32768;
    MakeBatch(batch, ctx, 1, rng, &b);
    const double bytes = 2.0 * batch * ctx * 4 * 128 * 2;
    const double ms =
        MedianMs([&] { CHECK_CUDA(kiln::kernels::PagedAttention(b.params, nullptr)); }, 3, 20);
    std::printf("%-44s %10.1f %12.0f %6.0f%%\n", "decode 1 x 32768 (dispatcher)", ms * 1e3,
                bytes / (ms * 1e-3) / 1e9, 100.0 * bytes / (ms * 1e-3) / 1e9 / copy_gbs);
  }
  // 2. Prefill, 8k causal.
  std::printf("\n%-44s %10s %12s %s\n", "prefill 8192 causal, 28q/4kv x 128, bf16", "ms", "TFLOP/s",
              "vs goal 350 (FA2 317, cuDNN 599)");
  {
    Batch b;
    const int S = 8192;
    MakeBatch(1, S, S, rng, &b);
    const double flops = 4.0 * S * static_cast<double>(S) / 2 * 128 * 28;
    struct Variant {
      const char* name;
      int warps, block_n;
    };
    const Variant variants[] = {{"mma.sync 4 warps, BlockM 64, BlockN 64", 4, 64},
                                {"mma.sync 8 warps, BlockM 128, BlockN 64", 8, 64},
                                {"mma.sync 4 warps, BlockM 64, BlockN 128", 4, 128},
                                {"mma.sync 8 warps, BlockM 128, BlockN 32", 8, 32},
                                {"wgmma 2 warpgroups, BlockM 128, BlockN 64", -1, 64},
                                {"wgmma 2 warpgroups, BlockM 128, BlockN 128", -1, 128},
                                {"wgmma pipelined, BlockM 128, BlockN 64", -2, 64},
                                {"wgmma warp-specialized, BlockN 64, 4 stages", -3, 64},
                                {"wgmma warp-specialized, BlockN 128, 2 stages", -3, 128},
                                {"wgmma TMA producer + ping-pong, BlockN 128", -4, 128}};
    for (const Variant& v : variants) {
      const double ms = MedianMs(
          [&] {
            CHECK_CUDA(
                kiln::kernels::PagedAttentionPrefillVariant(b.params, v.warps, v.block_n, nullptr));
          },
          2, 10);
      std::printf("%-44s %10.3f %12.1f %6.0f%%\n", v.name, ms, flops / (ms * 1e-3) / 1e12,
                  100.0 * flops / (ms * 1e-3) / 1e12 / 350);
    }
    const double ms =
        MedianMs([&] { CHECK_CUDA(kiln::kernels::PagedAttention(b.params, nullptr)); }, 2, 10);
    std::printf("%-44s %10.3f %12.1f %6.0f%%\n", "PagedAttention (dispatcher)", ms,
                flops / (ms * 1e-3) / 1e12, 100.0 * flops / (ms * 1e-3) / 1e12 / 350);
  }
  // 2b. Other prefill shapes: a batch of shorter prompts and a chunk over a cached prefix.
  // FLOPs: every new row attends to its position + 1 keys.
  struct Shape {
    const char* name;
    int num_seqs, seq_len, q_len;
  };
  const Shape shapes[] = {{"prefill 4 x 2048 causal", 4, 2048, 2048},
                          {"prefill 16 x 512 causal", 16, 512, 512},
                          {"chunk 2048 over 6144 cached (1 seq)", 1, 8192, 2048}};
  for (const Shape& sh : shapes) {
    Batch b;
    MakeBatch(sh.num_seqs, sh.seq_len, sh.q_len, rng, &b);
    const double ctx = sh.seq_len - sh.q_len;
    const double flops = 4.0 * 128 * 28 * sh.num_seqs *
                         (static_cast<double>(sh.q_len) * ctx + sh.q_len * (sh.q_len + 1.0) / 2);
    std::printf("\n%-44s %10s %12s\n", sh.name, "ms", "TFLOP/s");
    auto row = [&](const char* name, const std::function<cudaError_t()>& fn) {
      const double ms = MedianMs([&] { CHECK_CUDA(fn()); }, 2, 10);
      std::printf("%-44s %10.3f %12.1f\n", name, ms, flops / (ms * 1e-3) / 1e12);
    };
    row("wgmma 2 warpgroups, BlockN 128 (cp.async)",
        [&] { return kiln::kernels::PagedAttentionPrefillVariant(b.params, -1, 128, nullptr); });
    row("wgmma TMA producer + ping-pong, BlockN 128",
        [&] { return kiln::kernels::PagedAttentionPrefillVariant(b.params, -4, 128, nullptr); });
    row("PagedAttention (dispatcher)",
        [&] { return kiln::kernels::PagedAttention(b.params, nullptr); });
  }

  std::printf("\ncopy bandwidth (D2D memcpy, read + write): %.0f GB/s\n", copy_gbs);
  return 0;
}
