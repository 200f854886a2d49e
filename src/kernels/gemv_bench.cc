// gemv_bench: kernels::Gemv against cuBLASLt
// (kiln::cuda::Gemm with the Gemv route off) for the
// GEMMs of a Qwen2-7B decode step, as weight-streaming bandwidth against the card's copy
// bandwidth (device-to-device memcpy, bytes read + written), then the step's GEMM time summed
// (28 layers × qkv, o, gate_up, down + lm_head) against its bandwidth floor. Each shape cycles
// through enough weight copies (>= 256 MB) that no call finds its weights in L2; each figure is
// the median of 15 timed passes (CUDA events) after 3 warm-up passes. Last, the batch-1 fusions
// (gemv.h: add+RMSNorm prologue, SiLU·mul epilogue) against the kernels they replace, per call.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/gemm.h"
#include "kernels/activation.h"
#include "kernels/gemv.h"
#include "kernels/rms_norm.h"
#include "kernels/bench_util.h"

namespace {

using bf16 = __nv_bfloat16;

// Median milliseconds of one call of `pass` (which makes `calls` calls).
double MedianMs(const std::function<void()>& pass, int calls) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) pass();
  std::vector<double> ms;
  for (int i = 0; i < 15; ++i) {
    CHECK_CUDA(cudaEventRecord(start));
    pass();
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float t = 0;
    CHECK_CUDA(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t / calls);
  }
  CHECK_CUDA(cudaGetLastError());
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Shape {
  const char* name;
  int64_t out, in;
  int per_step;  // calls per decode step
  bool float_out;
};

// Batch-1 fusions vs the unfused kernels per call, 1 row, chained back to back (the fused
// add+norm ping-pongs its residual buffers as CudaBackend does):
//   qkv:     RmsNorm + Gemv                  | Gemv with the add+RMSNorm prologue
//   gate_up: RmsNorm + Gemv + SiluMul        | prologue + SiLU·mul epilogue | RmsNorm + epilogue
void PrologueBench(double copy_gbs) {
  namespace k = kiln::kernels;
  std::printf("%-8s %8s %6s | %16s | %16s | %16s\n", "batch 1", "N", "K", "unfused us GB/s",
              "fused us GB/s", "norm+epi us GB/s");
  for (const bool gate_up : {false, true}) {
    const int64_t out = gate_up ? 37888 : 4608, in = 3584, inter = out / 2;
    const size_t w_bytes = static_cast<size_t>(out) * in * sizeof(bf16);
    const int copies = static_cast<int>(std::max<size_t>(1, (size_t{256} << 20) / w_bytes + 1));
    std::vector<bf16*> ws(copies);
    for (auto& w : ws) {
      CHECK_CUDA(cudaMalloc(&w, w_bytes));
      CHECK_CUDA(cudaMemset(w, 0x3c, w_bytes));
    }
    std::vector<bf16*> bufs(7);  // a, r0, r1, norm weight, x, y (out), act (inter)
    for (bf16*& b : bufs) {
      CHECK_CUDA(cudaMalloc(&b, out * sizeof(bf16)));
      CHECK_CUDA(cudaMemset(b, 0x3c, out * sizeof(bf16)));
    }
    bf16 *a = bufs[0], *nw = bufs[3], *x = bufs[4], *y = bufs[5], *act = bufs[6];
    bf16* r[2] = {bufs[1], bufs[2]};
    const int variants = gate_up ? 3 : 2;
    double ms[3] = {0, 0, 0};
    for (int v = 0; v < variants; ++v) {
      ms[v] = MedianMs(
          [&] {
            int cur = 0;
            for (bf16* w : ws) {
              k::GemvParams<bf16> g{x, w, nullptr, y, 1, out, in};
              if (v == 1) {
                g.prologue.kind = k::GemvPrologue::kAddRmsNorm;
                g.prologue.addend = a;
                g.prologue.residual = r[cur];
                g.prologue.residual_out = r[1 - cur];
                g.prologue.norm_weight = nw;
                cur = 1 - cur;
              } else {
                k::RmsNormParams<bf16> np{a, r[0], nw, x, 1, static_cast<int>(in)};
                CHECK_CUDA(k::RmsNorm(np, nullptr));
              }
              if (gate_up && v > 0) {
                g.y = act;
                g.silu_mul_epilogue = true;
              }
              CHECK_CUDA(k::Gemv(g, nullptr));
              if (gate_up && v == 0) {
                k::SiluMulParams<bf16> sp{y, act, 1, static_cast<int>(inter)};
                CHECK_CUDA(k::SiluMul(sp, nullptr));
              }
            }
          },
          copies);
    }
    std::printf("%-8s %8lld %6lld |", gate_up ? "gate_up" : "qkv", static_cast<long long>(out),
                static_cast<long long>(in));
    for (int v = 0; v < variants; ++v) {
      const double gbs = w_bytes / (ms[v] * 1e-3) / 1e9;
      std::printf(" %7.1f %5.0f %3.0f%% |", ms[v] * 1e3, gbs, 100 * gbs / copy_gbs);
    }
    std::printf("\n");
    for (bf16* w : ws) CHECK_CUDA(cudaFree(w));
    for (bf16* b : bufs) CHECK_CUDA(cudaFree(b));
  }
}

// One cuBLASLt product through kiln::cuda::Gemm (its Gemv route off): y = x w^T.
cudaError_t RunCublasLt(kiln::cuda::Gemm& gemm, const bf16* x, const bf16* w, void* y, int rows,
                        const Shape& s) {
  const cudaDataType_t out_type = s.float_out ? CUDA_R_32F : CUDA_R_16BF;
  const bool ok =
      gemm.Run(CUDA_R_16BF, out_type, x, w, nullptr, y, rows, s.out, s.in, nullptr).ok();
  return ok ? cudaSuccess : cudaErrorUnknown;
}

}  // namespace

int main(int argc, char** argv) {
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);

  const size_t copy_bytes = size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  CHECK_CUDA(cudaMalloc(&src, copy_bytes));
  CHECK_CUDA(cudaMalloc(&dst, copy_bytes));
  CHECK_CUDA(cudaMemset(src, 1, copy_bytes));
  const double copy_ms = MedianMs(
      [&] { CHECK_CUDA(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice)); }, 1);
  const double copy_gbs = 2.0 * copy_bytes / (copy_ms * 1e-3) / 1e9;
  CHECK_CUDA(cudaFree(src));
  CHECK_CUDA(cudaFree(dst));
  std::printf("copy bandwidth (D2D memcpy, read + write): %.0f GB/s\n\n", copy_gbs);

  kiln::cuda::Gemm gemm;
  if (!gemm.Init().ok()) {
    std::fprintf(stderr, "Gemm::Init failed\n");
    return 1;
  }
  const Shape shapes[] = {{"qkv", 4608, 3584, 28, false},   {"o", 3584, 3584, 28, false},
                          {"gate_up", 37888, 3584, 28, false}, {"down", 3584, 18944, 28, false},
                          {"lm_head", 152064, 3584, 1, true}};
  gemm.set_gemv_max_rows(0);
  std::printf("%-8s %4s %8s %6s | %18s | %18s\n", "gemm", "rows", "N", "K", "gemv us GB/s",
              "cublasLt us GB/s");
  for (int rows : {1, 2, 3, 4, 8}) {
    double step[2] = {0, 0}, step_bytes = 0;
    for (const Shape& s : shapes) {
      const size_t w_bytes = static_cast<size_t>(s.out) * s.in * sizeof(bf16);
      const int copies = static_cast<int>(std::max<size_t>(1, (size_t{256} << 20) / w_bytes + 1));
      std::vector<bf16*> ws(copies);
      for (auto& w : ws) {
        CHECK_CUDA(cudaMalloc(&w, w_bytes));
        CHECK_CUDA(cudaMemset(w, 0x3c, w_bytes));  // bf16 0x3c3c ≈ 0.0115
      }
      bf16* x = nullptr;
      void* y = nullptr;
      CHECK_CUDA(cudaMalloc(&x, rows * s.in * sizeof(bf16)));
      CHECK_CUDA(cudaMemset(x, 0x3c, rows * s.in * sizeof(bf16)));
      CHECK_CUDA(cudaMalloc(&y, rows * s.out * sizeof(float)));
      double ms[2];
      for (int v = 0; v < 2; ++v) {
        ms[v] = MedianMs(
            [&] {
              for (bf16* w : ws) {
                cudaError_t err = cudaSuccess;
                if (v == 0 && s.float_out) {
                  kiln::kernels::GemvParams<float> p{x, w, nullptr, static_cast<float*>(y), rows,
                                                     s.out, s.in};
                  err = kiln::kernels::Gemv(p, nullptr);
                } else if (v == 0) {
                  kiln::kernels::GemvParams<bf16> p{x, w, nullptr, static_cast<bf16*>(y), rows,
                                                    s.out, s.in};
                  err = kiln::kernels::Gemv(p, nullptr);
                } else {
                  err = RunCublasLt(gemm, x, w, y, rows, s);
                }
                CHECK_CUDA(err);
              }
            },
            copies);
      }
      std::printf("%-8s %4d %8lld %6lld |", s.name, rows, static_cast<long long>(s.out),
                  static_cast<long long>(s.in));
      for (int v = 0; v < 2; ++v) {
        const double gbs = w_bytes / (ms[v] * 1e-3) / 1e9;
        std::printf(" %7.1f %5.0f %3.0f%% |", ms[v] * 1e3, gbs, 100 * gbs / copy_gbs);
        step[v] += ms[v] * s.per_step;
      }
      std::printf("\n");
      step_bytes += static_cast<double>(w_bytes) * s.per_step;
      for (bf16* w : ws) CHECK_CUDA(cudaFree(w));
      CHECK_CUDA(cudaFree(x));
      CHECK_CUDA(cudaFree(y));
    }
    const double floor_ms = step_bytes / (copy_gbs * 1e9) * 1e3;
    std::printf("step GEMMs, %d row(s): %.2f GB, floor %.3f ms | gemv %.3f ms (%.2fx) | cublasLt "
                "%.3f ms (%.2fx)\n\n",
                rows, step_bytes / 1e9, floor_ms, step[0], step[0] / floor_ms, step[1],
                step[1] / floor_ms);
  }
  PrologueBench(copy_gbs);
  return 0;
}
