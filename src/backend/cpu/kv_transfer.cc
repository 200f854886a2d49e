#include "backend/cpu/kv_transfer.h"

#include <chrono>
#include <cstring>
#include <new>
#include <string>

#include "common/check.h"

namespace kiln::cpu {

KvTransfer::KvTransfer(std::vector<uint8_t*> k_caches, std::vector<uint8_t*> v_caches,
                       int block_size, int64_t row_bytes, int64_t num_blocks)
    : k_caches_(std::move(k_caches)),
      v_caches_(std::move(v_caches)),
      block_size_(block_size),
      row_bytes_(row_bytes),
      num_blocks_(num_blocks) {
  KILN_CHECK_EQ(k_caches_.size(), v_caches_.size());
}

int64_t KvTransfer::record_bytes() const {
  return int64_t{2} * static_cast<int64_t>(k_caches_.size()) * block_size_ * row_bytes_;
}

Status KvTransfer::AllocateHostPool(int64_t num_records) {
  if (num_records <= 0) return Status::InvalidArgument("host KV pool: num_records must be > 0");
  if (num_records_ != 0) return Status::FailedPrecondition("host KV pool already allocated");
  if (num_records > (int64_t{1} << 40) / std::max<int64_t>(1, record_bytes())) {
    return Status::ResourceExhausted("host KV pool of " + std::to_string(num_records) +
                                     " records is too large");
  }
  const int64_t bytes = num_records * record_bytes();
  try {
    host_.assign(static_cast<size_t>(bytes), 0);
  } catch (const std::bad_alloc&) {
    host_ = {};
    return Status::ResourceExhausted("host KV pool: cannot allocate " + std::to_string(bytes) +
                                     " bytes (" + std::to_string(num_records) + " records)");
  }
  num_records_ = num_records;
  return Status::Ok();
}

StatusOr<uint64_t> KvTransfer::Copy(KvCopyDirection direction,
                                    std::span<const KvBlockCopy> copies) {
  if (num_records_ == 0) return Status::FailedPrecondition("no host KV pool");
  KILN_RETURN_IF_ERROR(ValidateKvBlockCopies(copies, num_blocks_, num_records_));
  const auto t0 = std::chrono::steady_clock::now();
  const size_t run = static_cast<size_t>(block_size_) * static_cast<size_t>(row_bytes_);
  const size_t record = static_cast<size_t>(record_bytes());
  for (const KvBlockCopy& c : copies) {
    uint8_t* rec = host_.data() + static_cast<size_t>(c.host_record) * record;
    const size_t off = static_cast<size_t>(c.device_block) * run;
    for (size_t l = 0; l < k_caches_.size(); ++l) {
      uint8_t* halves[2] = {k_caches_[l] + off, v_caches_[l] + off};
      for (int h = 0; h < 2; ++h) {
        uint8_t* r = rec + (2 * l + static_cast<size_t>(h)) * run;
        if (direction == KvCopyDirection::kDeviceToHost) {
          std::memcpy(r, halves[h], run);
        } else {
          std::memcpy(halves[h], r, run);
        }
      }
    }
  }
  const uint64_t ticket = next_ticket_++;
  done_[ticket] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ticket;
}

StatusOr<bool> KvTransfer::Done(uint64_t ticket, double* seconds) {
  auto it = done_.find(ticket);
  *seconds = it == done_.end() ? 0.0 : it->second;
  if (it != done_.end()) done_.erase(it);
  return true;
}

}  // namespace kiln::cpu
