#include "kernels/attention.h"
#include "kernels/attention_decode.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/attention_prefill_sm90.cuh"
#include "kernels/attention_prefill_sm90_tma.cuh"
#include "kernels/attention_rows.cuh"
#include "kernels/attention_variants.h"

namespace kiln::kernels {
namespace {

constexpr int kPrefillWarps = 8;
constexpr int kPrefillBlockN = 64;
constexpr int kSm90BlockN = 128;  // wgmma kernel (head_dim 128)

int Log2(int v) {
  int r = 0;
  while ((1 << r) < v) ++r;
  return r;
}

size_t SplitFloats(int num_tokens, int num_heads, int head_dim, int splits) {
  return static_cast<size_t>(splits) * num_tokens * num_heads * (head_dim + 2);
}

RowsSplitWorkspace CarveWorkspace(float* base, int num_tokens, int num_heads, int head_dim,
                                  int splits) {
  RowsSplitWorkspace ws;
  ws.o = base;
  ws.m = ws.o + static_cast<size_t>(splits) * num_tokens * num_heads * head_dim;
  ws.l = ws.m + static_cast<size_t>(splits) * num_tokens * num_heads;
  return ws;
}

// KV splits for the short-query kernels: none when the (row, KV head) blocks already cover every
// multiprocessor (the combine pass costs more than it gains, measured on H100); otherwise enough
// for about two blocks per multiprocessor, at least 128 keys per split (batch-1 decode at short
// context runs one block per KV head otherwise: 4 blocks for Qwen2-7B), bounded by kMaxKvSplits
// and by the workspace.
template <typename T>
int ChooseSplits(const PagedAttentionParams<T>& p, int rows, int sm_count) {
  int splits = p.num_kv_splits;
  if (splits <= 0) {
    const int blocks = rows * p.num_kv_heads;
    splits = blocks >= sm_count ? 1 : (2 * sm_count + blocks - 1) / blocks;
    const int by_len = (p.max_seq_len + 127) / 128;
    splits = splits < by_len ? splits : by_len;
  }
  splits = splits < 1 ? 1 : (splits > kMaxKvSplits ? kMaxKvSplits : splits);
  while (splits > 1 && (p.workspace == nullptr ||
                        SplitFloats(p.num_tokens, p.num_heads, p.head_dim, splits) * sizeof(float) >
                            p.workspace_size_bytes)) {
    --splits;
  }
  return splits;
}

// Grid of the short-query kernels: (row within sequence, sequence, KV head × split).
template <typename T>
dim3 ShortQueryGrid(const PagedAttentionParams<T>& p, int max_q_len, int z) {
  const int rows = p.max_seqlen_q < max_q_len ? p.max_seqlen_q : max_q_len;
  return dim3(rows > 0 ? rows : 1, p.num_seqs, z);
}

template <typename T, int D>
cudaError_t LaunchRows(const PagedAttentionParams<T>& p, int max_q_len, int log2_bs, int sm_count,
                       cudaStream_t stream) {
  using Cfg = RowsConfig<T, D>;
  const int group = p.num_heads / p.num_kv_heads;
  if (group > Cfg::kMaxGroupSize) return cudaErrorInvalidValue;
  const int splits = ChooseSplits(p, p.num_tokens, sm_count);  // rows = tokens (upper bound)
  const size_t smem = Cfg::SmemBytes(group);
  auto kernel = PagedAttentionRowsKernel<T, D>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  RowsSplitWorkspace ws;
  if (splits > 1) ws = CarveWorkspace(p.workspace, p.num_tokens, p.num_heads, p.head_dim, splits);
  err = LaunchPdl(kernel, ShortQueryGrid(p, max_q_len, p.num_kv_heads * splits),
                  dim3(Cfg::kThreads), smem, stream, p, ws, max_q_len, splits, log2_bs);
  if (err != cudaSuccess || splits == 1) return err;
  const int threads = p.head_dim < 128 ? ((p.head_dim + 31) / 32) * 32 : 128;
  return LaunchPdl(AttentionCombineKernel<T>, ShortQueryGrid(p, max_q_len, p.num_heads),
                   dim3(threads), 0, stream, p, ws, max_q_len, splits);
}

template <int D>
cudaError_t LaunchDecode(const PagedAttentionParams<__nv_bfloat16>& p, int max_q_len, int log2_bs,
                         int sm_count, cudaStream_t stream) {
  using Cfg = DecodeConfig<D>;
  const int splits = ChooseSplits(p, p.num_tokens, sm_count);  // rows = tokens (upper bound)
  auto kernel = PagedAttentionDecodeKernel<D>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(Cfg::kSmemBytes));
  if (err != cudaSuccess) return err;
  RowsSplitWorkspace ws;
  if (splits > 1) ws = CarveWorkspace(p.workspace, p.num_tokens, p.num_heads, p.head_dim, splits);
  err = LaunchPdl(kernel, ShortQueryGrid(p, max_q_len, p.num_kv_heads * splits),
                  dim3(Cfg::kThreads), Cfg::kSmemBytes, stream, p, ws, max_q_len, splits, log2_bs);
  if (err != cudaSuccess || splits == 1) return err;
  return LaunchPdl(AttentionCombineKernel<__nv_bfloat16>, ShortQueryGrid(p, max_q_len, p.num_heads),
                   dim3(D), 0, stream, p, ws, max_q_len, splits);
}

template <typename T>
bool DecodeTensorCoresApply(const PagedAttentionParams<T>& p) {
  if constexpr (!std::is_same_v<T, __nv_bfloat16>) {
    return false;
  } else {
    return (p.head_dim == 64 || p.head_dim == 128) &&
           p.num_heads / p.num_kv_heads <= DecodeConfig<64>::kMaxGroupSize &&
           reinterpret_cast<uintptr_t>(p.q) % 16 == 0;
  }
}

// Short query runs (decode): the tensor-core decode kernel where it applies, else the rows kernel.
// Only the tensor-core kernel takes the fused RoPE (checked by the caller, PagedAttention).
template <typename T>
cudaError_t DispatchRows(const PagedAttentionParams<T>& p, int max_q_len, int log2_bs, int sm_count,
                         cudaStream_t stream, bool allow_tensor_cores = true) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if (allow_tensor_cores && DecodeTensorCoresApply(p)) {
      return p.head_dim == 64 ? LaunchDecode<64>(p, max_q_len, log2_bs, sm_count, stream)
                              : LaunchDecode<128>(p, max_q_len, log2_bs, sm_count, stream);
    }
  }
  if (p.rope.enabled) return cudaErrorInvalidValue;
  switch (p.head_dim) {
    case 8:
      return LaunchRows<T, 8>(p, max_q_len, log2_bs, sm_count, stream);
    case 16:
      return LaunchRows<T, 16>(p, max_q_len, log2_bs, sm_count, stream);
    case 32:
      return LaunchRows<T, 32>(p, max_q_len, log2_bs, sm_count, stream);
    case 64:
      return LaunchRows<T, 64>(p, max_q_len, log2_bs, sm_count, stream);
    case 80:
      return LaunchRows<T, 80>(p, max_q_len, log2_bs, sm_count, stream);
    case 96:
      return LaunchRows<T, 96>(p, max_q_len, log2_bs, sm_count, stream);
    case 128:
      return LaunchRows<T, 128>(p, max_q_len, log2_bs, sm_count, stream);
    case 256:
      return LaunchRows<T, 256>(p, max_q_len, log2_bs, sm_count, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

// One prefill kernel launch: grid (query tiles, heads, sequences), dynamic shared memory raised
// past 48 KB as needed.
template <typename Kernel>
cudaError_t LaunchPrefillKernel(Kernel kernel, int block_m, int threads, size_t smem_bytes,
                                const PagedAttentionParams<__nv_bfloat16>& p, int min_q_len,
                                int log2_bs, cudaStream_t stream) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem_bytes));
  if (err != cudaSuccess) return err;
  const dim3 grid((p.max_seqlen_q + block_m - 1) / block_m, p.num_heads, p.num_seqs);
  kernel<<<grid, threads, smem_bytes, stream>>>(p, min_q_len, log2_bs);
  return cudaGetLastError();
}

template <int D, int kWarps = kPrefillWarps, int kBlockN = kPrefillBlockN>
cudaError_t LaunchPrefill(const PagedAttentionParams<__nv_bfloat16>& p, int min_q_len, int log2_bs,
                          cudaStream_t stream) {
  using Cfg = PrefillConfig<D, kWarps, kBlockN>;
  return LaunchPrefillKernel(PagedAttentionPrefillKernel<D, kWarps, kBlockN>, Cfg::kBlockM,
                             Cfg::kThreads, Cfg::kSmemBytes, p, min_q_len, log2_bs, stream);
}

template <int kBlockN>
cudaError_t LaunchPrefillSm90(const PagedAttentionParams<__nv_bfloat16>& p, int min_q_len,
                              int log2_bs, cudaStream_t stream) {
  using Cfg = Sm90PrefillConfig<kBlockN>;
  return LaunchPrefillKernel(PagedAttentionPrefillSm90Kernel<kBlockN>, Cfg::kBlockM, Cfg::kThreads,
                             Cfg::kSmemBytes, p, min_q_len, log2_bs, stream);
}

// cuTensorMapEncodeTiled from the driver, resolved once through the runtime (no libcuda link).
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                   const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                   const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                   CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiledFn GetEncodeTiled() {
  static const EncodeTiledFn fn = []() -> EncodeTiledFn {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult result = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault,
                                         &result) != cudaSuccess ||
        result != cudaDriverEntryPointSuccess) {
      return nullptr;
    }
    return reinterpret_cast<EncodeTiledFn>(ptr);
  }();
  return fn;
}

// Tensor map of one layer's K or V cache seen as [slots, num_kv_heads * 128] bf16 (head_dim
// 128), box [rows slots][64 columns], 128-byte swizzle (the layout wgmma.cuh describes). The row
// count is not known here (the cache size is not a parameter); only slots named by the block
// table are ever addressed, so the bound is the largest one a coordinate can express.
bool MakeKvTensorMap(CUtensorMap* map, const __nv_bfloat16* cache, int num_kv_heads, int rows) {
  const EncodeTiledFn encode = GetEncodeTiled();
  if (encode == nullptr) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(num_kv_heads) * 128, 0x7fffffffull};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(num_kv_heads) * 128 * 2};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<__nv_bfloat16*>(cache), dims,
                strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// The TMA + ping-pong kernel (attention_prefill_sm90_tma.cuh); cudaErrorNotSupported when the
// driver offers no tensor-map encoder (the caller then takes the cp.async kernel).
cudaError_t LaunchPrefillSm90Tma(const PagedAttentionParams<__nv_bfloat16>& p, int min_q_len,
                                 int log2_bs, cudaStream_t stream) {
  using Cfg = Sm90TmaConfig;
  CUtensorMap k_map, v_map;
  const int rows = p.block_size < Cfg::kBlockN ? p.block_size : Cfg::kBlockN;
  if (!MakeKvTensorMap(&k_map, p.k_cache, p.num_kv_heads, rows) ||
      !MakeKvTensorMap(&v_map, p.v_cache, p.num_kv_heads, rows)) {
    return cudaErrorNotSupported;
  }
  auto kernel = PagedAttentionPrefillSm90TmaKernel;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(Cfg::kSmemBytes));
  if (err != cudaSuccess) return err;
  const dim3 grid(p.num_heads, (p.max_seqlen_q + Cfg::kBlockM - 1) / Cfg::kBlockM, p.num_seqs);
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(k_map, v_map, p, min_q_len, log2_bs);
  return cudaGetLastError();
}

cudaError_t LaunchPrefillSm90Pipelined(const PagedAttentionParams<__nv_bfloat16>& p, int min_q_len,
                                       int log2_bs, cudaStream_t stream) {
  using Cfg = Sm90PipelinedConfig;
  return LaunchPrefillKernel(PagedAttentionPrefillSm90PipelinedKernel, Cfg::kBlockM, Cfg::kThreads,
                             Cfg::kSmemBytes, p, min_q_len, log2_bs, stream);
}

template <int kBlockN, int kStages>
cudaError_t LaunchPrefillSm90Ws(const PagedAttentionParams<__nv_bfloat16>& p, int min_q_len,
                                int log2_bs, cudaStream_t stream) {
  using Cfg = Sm90WsConfig<kBlockN, kStages>;
  return LaunchPrefillKernel(PagedAttentionPrefillSm90WsKernel<kBlockN, kStages>, Cfg::kBlockM,
                             Cfg::kThreads, Cfg::kSmemBytes, p, min_q_len, log2_bs, stream);
}

template <typename T>
bool PrefillApplies(const PagedAttentionParams<T>& p) {
  if constexpr (!std::is_same_v<T, __nv_bfloat16>) {
    return false;
  } else {
    return (p.head_dim == 64 || p.head_dim == 128) && p.max_seqlen_q > kDecodeMaxQueryLen &&
           reinterpret_cast<uintptr_t>(p.q) % 16 == 0 && p.q_stride % 8 == 0 &&
           p.out_stride % 2 == 0;
  }
}

}  // namespace

cudaError_t PagedAttentionPrefillVariant(const PagedAttentionParams<__nv_bfloat16>& p, int warps,
                                         int block_n, cudaStream_t stream) {
  if (p.head_dim != 128 || p.block_size < 16 || (p.block_size & (p.block_size - 1)) != 0) {
    return cudaErrorInvalidValue;
  }
  const int log2_bs = Log2(p.block_size);
  if (warps == 4 && block_n == 64) return LaunchPrefill<128, 4, 64>(p, 1, log2_bs, stream);
  if (warps == 8 && block_n == 64) return LaunchPrefill<128, 8, 64>(p, 1, log2_bs, stream);
  if (warps == 4 && block_n == 128) return LaunchPrefill<128, 4, 128>(p, 1, log2_bs, stream);
  if (warps == 8 && block_n == 32) return LaunchPrefill<128, 8, 32>(p, 1, log2_bs, stream);
  if (warps == -1 && block_n == 64) return LaunchPrefillSm90<64>(p, 1, log2_bs, stream);
  if (warps == -1 && block_n == 128) return LaunchPrefillSm90<128>(p, 1, log2_bs, stream);
  if (warps == -2 && block_n == 64) return LaunchPrefillSm90Pipelined(p, 1, log2_bs, stream);
  if (warps == -3 && block_n == 64) return LaunchPrefillSm90Ws<64, 4>(p, 1, log2_bs, stream);
  if (warps == -3 && block_n == 128) return LaunchPrefillSm90Ws<128, 2>(p, 1, log2_bs, stream);
  if (warps == -4 && block_n == 128) return LaunchPrefillSm90Tma(p, 1, log2_bs, stream);
  return cudaErrorInvalidValue;
}

cudaError_t PagedAttentionDecodeVariant(const PagedAttentionParams<__nv_bfloat16>& p,
                                        bool tensor_cores, cudaStream_t stream) {
  int device = 0, sm_count = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) {
    err = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  }
  if (err != cudaSuccess) return err;
  return DispatchRows(p, 1 << 30, Log2(p.block_size), sm_count, stream, tensor_cores);
}

bool PagedAttentionFusesRope(int num_heads, int num_kv_heads, int head_dim, int max_seqlen_q) {
  return max_seqlen_q == 1 && num_kv_heads > 0 && num_heads % num_kv_heads == 0 &&
         num_heads / num_kv_heads <= DecodeConfig<64>::kMaxGroupSize &&
         (head_dim == 64 || head_dim == 128);
}

size_t PagedAttentionWorkspaceSize(int num_tokens, int num_heads, int head_dim, int num_kv_splits) {
  return SplitFloats(num_tokens, num_heads, head_dim, num_kv_splits) * sizeof(float);
}

template <typename T>
cudaError_t PagedAttention(const PagedAttentionParams<T>& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.num_tokens < 0 || p.num_seqs <= 0 || p.num_heads <= 0 || p.num_kv_heads <= 0 ||
      p.num_seqs > 65535 || p.num_heads % p.num_kv_heads != 0 || p.head_dim <= 0 ||
      p.head_dim % 8 != 0 || p.block_size < 16 || (p.block_size & (p.block_size - 1)) != 0 ||
      p.q_stride % 8 != 0 || reinterpret_cast<uintptr_t>(p.k_cache) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(p.v_cache) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (p.rope.enabled) {
    const PagedAttentionFusedRope<T>& r = p.rope;
    if (!std::is_same_v<T, __nv_bfloat16> ||
        !PagedAttentionFusesRope(p.num_heads, p.num_kv_heads, p.head_dim, p.max_seqlen_q) ||
        r.positions == nullptr || r.inv_freq == nullptr || r.slot_mapping == nullptr ||
        r.k_new == nullptr || r.v_new == nullptr || r.k_cache_out != p.k_cache ||
        r.v_cache_out != p.v_cache || r.k_cache_out == nullptr || r.v_cache_out == nullptr) {
      return cudaErrorInvalidValue;
    }
  }
  const int log2_bs = Log2(p.block_size);
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  int sm_count = 0;
  err = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;

  if (PrefillApplies(p)) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      constexpr int kMinQ = kDecodeMaxQueryLen + 1;
      if (p.head_dim == 64) {
        err = LaunchPrefill<64>(p, kMinQ, log2_bs, stream);
      } else {
        err = LaunchPrefillSm90Tma(p, kMinQ, log2_bs, stream);
        if (err == cudaErrorNotSupported) {
          err = LaunchPrefillSm90<kSm90BlockN>(p, kMinQ, log2_bs, stream);
        }
      }
      if (err != cudaSuccess) return err;
    }
    // Rows kernel for the short-query sequences of a mixed batch (exits at once for the others).
    PagedAttentionParams<T> rows = p;
    rows.num_kv_splits = 1;
    return DispatchRows(rows, kDecodeMaxQueryLen, log2_bs, sm_count, stream);
  }
  return DispatchRows(p, 1 << 30, log2_bs, sm_count, stream);
}

template cudaError_t PagedAttention<float>(const PagedAttentionParams<float>&, cudaStream_t);
template cudaError_t PagedAttention<__nv_bfloat16>(const PagedAttentionParams<__nv_bfloat16>&,
                                                   cudaStream_t);

}  // namespace kiln::kernels
