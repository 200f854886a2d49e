// Gather / scatter of KV blocks between the paged KV cache and a contiguous staging buffer of
// block records, so that a block's KV for every layer moves host↔device as one large copy
// (backend.h, "KV block transfers"). Launchers take raw pointers and a stream, return cudaError_t,
// and are includable from host C++.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kiln::cuda {

inline constexpr int kMaxKvCopyBlocks = 64;  // blocks per launch

struct KvCopyBlockList {
  int32_t ids[kMaxKvCopyBlocks];
  int count = 0;
};

// For i in [0, blocks.count) and half in [0, num_halves): the run of run_bytes bytes at
// halves[half] + blocks.ids[i] * run_bytes (the block's K or V of one layer) is copied to
// (to_staging) or from staging + (i * num_halves + half) * run_bytes. `halves` is a device array
// of num_halves pointers ([layer][K, V]); run_bytes is a multiple of 16.
cudaError_t LaunchKvBlockCopy(char* const* halves, int num_halves, int64_t run_bytes,
                              const KvCopyBlockList& blocks, char* staging, bool to_staging,
                              cudaStream_t stream);

}  // namespace kiln::cuda
