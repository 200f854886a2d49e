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
// ticket; Done() queries the end event (never a device-wide or stream sync).
//
// The device side is the backend's KvPool (device_memory.h): its per-layer k(l) / v(l) base
// pointers, bound once the pool has its final size; sizes come from the ModelShape and the KV
// element type. CudaBackend only forwards the Backend calls here.
//
// Thread-safety: used by the backend's one thread.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_util.h"
#include "backend/cuda/device_fill.h"
#include "backend/cuda/device_memory.h"
#include "kiln/status.h"
#include "model/model_shape.h"

namespace kiln::cuda {

class KvTransfer final {
 public:
  KvTransfer() = default;
  ~KvTransfer();
  KvTransfer(const KvTransfer&) = delete;
  KvTransfer& operator=(const KvTransfer&) = delete;

  // Bytes of one block record: 2 × layers × block_size × kv_size elements of kv_dtype.
  static int64_t RecordBytes(const ModelShape& shape, ElemType kv_dtype, int block_size);
  // The record layout string (backend.h kv_record_layout).
  static std::string RecordLayout(const ModelShape& shape, ElemType kv_dtype, int block_size);

  // Binds `pool` (allocated with shape, kv_dtype, block_size, at its final size; it must not be
  // reallocated afterwards) and allocates num_records pinned host records. Copies are ordered
  // after the work on compute_stream.
  Status Init(const KvPool& pool, const ModelShape& shape, ElemType kv_dtype, int block_size,
              cudaStream_t compute_stream, int64_t num_records);
  bool initialized() const { return num_records_ > 0; }
  int64_t record_bytes() const { return static_cast<int64_t>(num_halves_) * run_bytes_; }
  uint8_t* host_pool() const { return host_.as<uint8_t>(); }
  StatusOr<uint64_t> Copy(KvCopyDirection direction, std::span<const KvBlockCopy> copies);
  bool Done(uint64_t ticket, double* seconds);

 private:
  struct Ticket {
    cudaEvent_t start = nullptr;
    cudaEvent_t end = nullptr;
  };
  Status GetEvents(Ticket* t);

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
