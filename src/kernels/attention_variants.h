// Internal to kiln_kernels and its benchmark: the tensor-core prefill kernel at a chosen tile
// shape (head_dim 128), so that kernels_bench can compare configurations in one run. The engine
// uses PagedAttention (attention.h), which picks the configuration itself.
#pragma once

#include "kernels/attention.h"

namespace kiln::kernels {

// Supported (warps, block_n): (4, 64), (8, 64), (4, 128), (8, 32). Only sequences with
// q_len >= 1 are processed (no rows-kernel companion launch). Other shapes → cudaErrorInvalidValue.
cudaError_t PagedAttentionPrefillVariant(const PagedAttentionParams<__nv_bfloat16>& params,
                                         int warps, int block_n, cudaStream_t stream);

}  // namespace kiln::kernels
