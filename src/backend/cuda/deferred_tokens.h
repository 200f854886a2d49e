// Deferred tokens on the device (async scheduling, see ForwardBatch::deferred_tokens): before a
// forward pass reads its token ids, each deferred entry copies the id the previous step's sampler
// wrote on the device into its token row, so the host never waits for those ids. Includable from
// host C++.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kiln::cuda {

// For i in [0, num_entries): token_ids[entries[2i]] = sampled_ids[entries[2i + 1]], or 0 when that
// id is outside [0, vocab_size) (a failed sample: the engine fails its request, and the row must
// still not read outside the embedding table).
cudaError_t LaunchFillDeferredTokens(int32_t* token_ids, const int32_t* entries, int num_entries,
                                     const int32_t* sampled_ids, int vocab_size,
                                     cudaStream_t stream);

}  // namespace kiln::cuda
