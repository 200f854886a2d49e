// Internal to kiln_kernels and its benchmark: the attention kernels at chosen configurations, so
// that kernels_bench can compare them in one run. The engine
// uses PagedAttention (attention.h), which picks the configuration itself.
#pragma once

#include "kernels/attention.h"

namespace kiln::kernels {

// Supported (warps, block_n): mma.sync (4, 64), (8, 64), (4, 128), (8, 32); warps = -1 selects
// the wgmma kernel (2 warpgroups, BlockM 128) with block_n 64 or 128; warps = -2, block_n = 64
// the software-pipelined wgmma kernel; warps = -3, block_n = 64 (4 stages) or 128 (2 stages) the
// warp-specialized wgmma kernel (producer warp + mbarrier pipeline); warps = -4, block_n = 128
// the TMA-producer ping-pong wgmma kernel (attention_prefill_sm90_tma.cuh, the dispatcher's). Only
// sequences with q_len >= 1 are processed (no rows-kernel companion launch). Other shapes →
// cudaErrorInvalidValue.
cudaError_t PagedAttentionPrefillVariant(const PagedAttentionParams<__nv_bfloat16>& params,
                                         int warps, int block_n, cudaStream_t stream);

// Every sequence through the short-query path: the tensor-core decode kernel (tensor_cores) or
// the CUDA-core rows kernel, with params.num_kv_splits as given (0 → chosen).
cudaError_t PagedAttentionDecodeVariant(const PagedAttentionParams<__nv_bfloat16>& params,
                                        bool tensor_cores, cudaStream_t stream);

}  // namespace kiln::kernels
