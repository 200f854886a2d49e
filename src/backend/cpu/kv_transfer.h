// cpu::KvTransfer: the CPU backend's KV block transfers (backend.h, "KV block transfers"): a host
// pool of block records and copies between it and the per-layer KV caches. The CPU backend has no
// device, so the "device pool" is its KV cache and a copy is a synchronous memcpy per layer and
// K/V half (2 × layers contiguous runs of block_size × kv_size floats per block); tickets are
// done as soon as they are issued. The same engine-side tier logic therefore runs in CI.
//
// Record layout: [layer][K, V][block_size][num_kv_heads][head_dim] float32.
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
  // k_caches[l] / v_caches[l]: layer l's caches, [num_blocks * block_size, kv_size] floats each.
  KvTransfer(std::vector<float*> k_caches, std::vector<float*> v_caches, int block_size,
             int kv_size, int64_t num_blocks);
  KvTransfer(const KvTransfer&) = delete;
  KvTransfer& operator=(const KvTransfer&) = delete;

  int64_t record_bytes() const;
  Status AllocateHostPool(int64_t num_records);
  uint8_t* host_pool() {
    return host_.empty() ? nullptr : reinterpret_cast<uint8_t*>(host_.data());
  }
  StatusOr<uint64_t> Copy(KvCopyDirection direction, std::span<const KvBlockCopy> copies);
  bool Done(uint64_t ticket, double* seconds);

 private:
  std::vector<float*> k_caches_, v_caches_;
  int block_size_;
  int kv_size_;
  int64_t num_blocks_;
  int64_t num_records_ = 0;
  std::vector<float> host_;  // [num_records, record floats]
  uint64_t next_ticket_ = 1;
  std::map<uint64_t, double> done_;  // issued tickets (all complete) → seconds
};

}  // namespace kiln::cpu
