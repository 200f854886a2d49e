// cpu::KvTransfer: the CPU backend's KV block transfers (backend.h, "KV block transfers"): a host
// pool of block records and copies between it and the per-layer KV caches. The CPU backend has no
// device, so the "device pool" is its KV cache and a copy is a synchronous memcpy per layer and
// K/V half (2 × layers contiguous runs of block_size × kv_size elements per block); tickets are
// done as soon as they are issued. The same engine-side tier logic therefore runs in CI.
//
// Record layout: [layer][K, V][block_size][num_kv_heads][head_dim] in the cache's element type
// (float32, bfloat16 or E4M3 codes; the backend's kv_record_layout() names it and its scales).
// Thread-safety: used by the backend's one thread.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "kiln/status.h"

namespace kiln::cpu {

class KvTransfer final {
 public:
  // k_caches[l] / v_caches[l]: layer l's caches, [num_blocks * block_size] rows of
  // row_bytes (kv_size × element bytes) each.
  KvTransfer(std::vector<uint8_t*> k_caches, std::vector<uint8_t*> v_caches, int block_size,
             int64_t row_bytes, int64_t num_blocks);
  KvTransfer(const KvTransfer&) = delete;
  KvTransfer& operator=(const KvTransfer&) = delete;

  int64_t record_bytes() const;
  Status AllocateHostPool(int64_t num_records);
  uint8_t* host_pool() {
    return host_.empty() ? nullptr : host_.data();
  }
  StatusOr<uint64_t> Copy(KvCopyDirection direction, std::span<const KvBlockCopy> copies);
  StatusOr<bool> Done(uint64_t ticket, double* seconds);

 private:
  std::vector<uint8_t*> k_caches_, v_caches_;
  int block_size_;
  int64_t row_bytes_;
  int64_t num_blocks_;
  int64_t num_records_ = 0;
  std::vector<uint8_t> host_;  // [num_records, record_bytes]
  uint64_t next_ticket_ = 1;
  std::map<uint64_t, double> done_;  // issued tickets (all complete) → seconds
};

}  // namespace kiln::cpu
