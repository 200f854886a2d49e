#include "engine/mask_worker.h"

#include "common/check.h"

namespace kiln {

MaskWorker::~MaskWorker() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void MaskWorker::Start(std::span<RequestState* const> requests) {
  if (requests.empty()) return;
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  {
    std::lock_guard<std::mutex> lock(mu_);
    KILN_CHECK(!busy_) << "MaskWorker::Start while the previous masks are still being filled";
    pending_.assign(requests.begin(), requests.end());
    busy_ = true;
  }
  cv_.notify_all();
}

void MaskWorker::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !busy_; });
}

void MaskWorker::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || busy_; });
    if (stop_) return;
    std::vector<RequestState*> batch;
    batch.swap(pending_);
    lock.unlock();
    for (RequestState* r : batch) r->constraint->FillNextTokenBitmask(r->allowed_bitmask.data());
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace kiln
