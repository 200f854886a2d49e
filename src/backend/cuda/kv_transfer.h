// cuda::KvTransfer: the CUDA backend's KV block transfers (backend.h, "KV block transfers").
// It owns a pinned host pool of block records, a device staging buffer of up to kMaxKvCopyBlocks
// records, a dedicated copy stream and events. A copy call first makes the copy stream wait for an
// event recorded on the compute stream (so it sees every Forward issued before it, and a load
// never lands in a block a still-running Forward uses), then per chunk of blocks:
//   device → host: gather kernel (KV cache → staging), then one cudaMemcpyAsync per record (per
//   run of consecutive host records);
//   host → device: the same copies host → staging, then the scatter kernel.
// Each block record therefore crosses PCIe as one contiguous copy (2 × layers runs are gathered on
// the device), never as 2 × layers small copies. Completion and timing: start / end events per
// ticket; Done() queries the end event (never a device-wide or stream sync) and reports an error
// the query returns. A call that fails after queueing part of its copies synchronizes the copy
// stream before it returns the error (the caller then releases the blocks the copies used).
//
// Thread-safety: used by the backend's one thread.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_util.h"
#include "kiln/status.h"

namespace kiln::cuda {

class KvTransfer final {
 public:
  KvTransfer() = default;
  ~KvTransfer();
  KvTransfer(const KvTransfer&) = delete;
  KvTransfer& operator=(const KvTransfer&) = delete;

  // halves: the per-layer K and V caches, [layer][K, V] (2 × layers device pointers); run_bytes:
  // one block's bytes in one of them. Allocates num_records pinned host records.
  Status Init(const std::vector<void*>& halves, int64_t run_bytes, int64_t num_blocks,
              cudaStream_t compute_stream, int64_t num_records);
  bool initialized() const { return num_records_ > 0; }
  int64_t record_bytes() const { return static_cast<int64_t>(num_halves_) * run_bytes_; }
  uint8_t* host_pool() const { return host_.as<uint8_t>(); }
  // On an error, every copy this call had queued has finished before it returns.
  StatusOr<uint64_t> Copy(KvCopyDirection direction, std::span<const KvBlockCopy> copies);
  // True when done, false while running, the device's error when the copies failed.
  StatusOr<bool> Done(uint64_t ticket, double* seconds);

 private:
  struct Ticket {
    cudaEvent_t start = nullptr;
    cudaEvent_t end = nullptr;
  };
  Status GetEvents(Ticket* t);
  // Queues the copies of one call on the copy stream between t.start and t.end.
  Status Issue(KvCopyDirection direction, std::span<const KvBlockCopy> copies, const Ticket& t);

  int num_halves_ = 0;
  int64_t run_bytes_ = 0;
  int64_t num_blocks_ = 0;
  int64_t num_records_ = 0;
  int64_t staging_records_ = 0;
  cudaStream_t compute_ = nullptr;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t order_ = nullptr;  // recorded on the compute stream at each call
  PinnedBuffer host_;
  DeviceBuffer staging_;
  DeviceBuffer halves_dev_;  // char*[num_halves]
  uint64_t next_ticket_ = 1;
  std::map<uint64_t, Ticket> tickets_;
  std::vector<Ticket> spare_;
};

}  // namespace kiln::cuda
