#include "backend/cuda/kv_transfer.h"

#include <algorithm>
#include <string>

#include "backend/cuda/kv_block_copy.h"
#include "common/logging.h"

namespace kiln::cuda {

KvTransfer::~KvTransfer() {
  if (copy_ != nullptr) cudaStreamSynchronize(copy_);
  for (auto& [id, t] : tickets_) spare_.push_back(t);
  for (Ticket& t : spare_) {
    cudaEventDestroy(t.start);
    cudaEventDestroy(t.end);
  }
  if (order_ != nullptr) cudaEventDestroy(order_);
  if (copy_ != nullptr) cudaStreamDestroy(copy_);
}

Status KvTransfer::Init(const std::vector<void*>& halves, int64_t run_bytes, int64_t num_blocks,
                        cudaStream_t compute_stream, int64_t num_records) {
  if (initialized()) return Status::FailedPrecondition("host KV pool already allocated");
  if (num_records <= 0) return Status::InvalidArgument("host KV pool: num_records must be > 0");
  if (run_bytes % 16 != 0) {
    return Status::InvalidArgument("KV block run of " + std::to_string(run_bytes) +
                                   " bytes is not a multiple of 16");
  }
  num_halves_ = static_cast<int>(halves.size());
  run_bytes_ = run_bytes;
  num_blocks_ = num_blocks;
  compute_ = compute_stream;
  KILN_RETURN_IF_ERROR(host_.Allocate(static_cast<size_t>(num_records * record_bytes()))
                           .WithContext("pinned host KV pool"));
  // Staging: up to kMaxKvCopyBlocks records, at most 256 MiB.
  staging_records_ =
      std::clamp<int64_t>((int64_t{256} << 20) / record_bytes(), 1, kMaxKvCopyBlocks);
  KILN_RETURN_IF_ERROR(staging_.Allocate(static_cast<size_t>(staging_records_ * record_bytes())));
  KILN_RETURN_IF_ERROR(halves_dev_.Allocate(halves.size() * sizeof(void*)));
  KILN_CUDA_RETURN_IF_ERROR(cudaMemcpy(halves_dev_.get(), halves.data(),
                                       halves.size() * sizeof(void*), cudaMemcpyHostToDevice));
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
  KILN_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&order_, cudaEventDisableTiming));
  num_records_ = num_records;
  return Status::Ok();
}

Status KvTransfer::GetEvents(Ticket* t) {
  if (!spare_.empty()) {
    *t = spare_.back();
    spare_.pop_back();
    return Status::Ok();
  }
  KILN_CUDA_RETURN_IF_ERROR(cudaEventCreate(&t->start));
  KILN_CUDA_RETURN_IF_ERROR(cudaEventCreate(&t->end));
  return Status::Ok();
}

StatusOr<uint64_t> KvTransfer::Copy(KvCopyDirection direction,
                                    std::span<const KvBlockCopy> copies) {
  if (!initialized()) return Status::FailedPrecondition("no host KV pool");
  KILN_RETURN_IF_ERROR(ValidateKvBlockCopies(copies, num_blocks_, num_records_));
  Ticket t;
  KILN_RETURN_IF_ERROR(GetEvents(&t));
  const Status issued = Issue(direction, copies, t);
  if (!issued.ok()) {
    // Part of the copies may be queued on the copy stream: wait for them, so that the caller may
    // release the blocks and records of the failed call (an error path; the copy stream holds
    // nothing but transfers).
    const cudaError_t drained = cudaStreamSynchronize(copy_);
    if (drained != cudaSuccess) {
      KILN_LOG(ERROR) << "KV copy stream after a failed copy: " << cudaGetErrorString(drained);
    }
    spare_.push_back(t);
    return issued;
  }
  const uint64_t ticket = next_ticket_++;
  tickets_.emplace(ticket, t);
  return ticket;
}

Status KvTransfer::Issue(KvCopyDirection direction, std::span<const KvBlockCopy> copies,
                         const Ticket& t) {
  // Ordered after everything already issued on the compute stream (no device-wide sync).
  KILN_CUDA_RETURN_IF_ERROR(cudaEventRecord(order_, compute_));
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_, order_, 0));
  KILN_CUDA_RETURN_IF_ERROR(cudaEventRecord(t.start, copy_));
  const bool to_host = direction == KvCopyDirection::kDeviceToHost;
  auto* halves = static_cast<char* const*>(halves_dev_.get());
  char* staging = staging_.as<char>();
  const size_t rec = static_cast<size_t>(record_bytes());
  const size_t chunk = static_cast<size_t>(staging_records_);
  for (size_t begin = 0; begin < copies.size(); begin += chunk) {
    const size_t n = std::min(chunk, copies.size() - begin);
    KvCopyBlockList list;
    list.count = static_cast<int>(n);
    for (size_t i = 0; i < n; ++i) list.ids[i] = copies[begin + i].device_block;
    if (to_host) {
      KILN_CUDA_RETURN_IF_ERROR(
          LaunchKvBlockCopy(halves, num_halves_, run_bytes_, list, staging, true, copy_));
    }
    // One cudaMemcpyAsync per run of consecutive host records (staging is consecutive).
    for (size_t i = 0; i < n;) {
      size_t j = i + 1;
      while (j < n && copies[begin + j].host_record == copies[begin + j - 1].host_record + 1) ++j;
      uint8_t* h = host_pool() + static_cast<size_t>(copies[begin + i].host_record) * rec;
      char* d = staging + i * rec;
      const size_t bytes = (j - i) * rec;
      KILN_CUDA_RETURN_IF_ERROR(to_host
                                    ? cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, copy_)
                                    : cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, copy_));
      i = j;
    }
    if (!to_host) {
      KILN_CUDA_RETURN_IF_ERROR(
          LaunchKvBlockCopy(halves, num_halves_, run_bytes_, list, staging, false, copy_));
    }
  }
  KILN_CUDA_RETURN_IF_ERROR(cudaEventRecord(t.end, copy_));
  return Status::Ok();
}

StatusOr<bool> KvTransfer::Done(uint64_t ticket, double* seconds) {
  *seconds = 0.0;
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) return true;
  const cudaError_t q = cudaEventQuery(it->second.end);
  if (q == cudaErrorNotReady) return false;
  spare_.push_back(it->second);
  tickets_.erase(it);
  if (q != cudaSuccess) {
    return Status::Internal(std::string("KV copy failed on the device: ") + cudaGetErrorString(q));
  }
  float ms = 0.0f;
  if (cudaEventElapsedTime(&ms, spare_.back().start, spare_.back().end) == cudaSuccess) {
    *seconds = ms * 1e-3;
  }
  return true;
}

}  // namespace kiln::cuda
