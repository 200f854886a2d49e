// MaskWorker: one background thread that fills the grammar bitmasks of constrained requests
// (TokenConstraint::FillNextTokenBitmask into RequestState::allowed_bitmask) while the engine
// thread runs the forward pass, so that mask computation overlaps it by design (on a synchronous
// backend such as the CPU one as well as on the asynchronous CUDA one).
//
// Thread-safety: Start and Wait are called by the engine thread only, alternately. Between them
// the worker owns the constraint and the bitmask of each request it was given; the engine thread
// must not touch those two fields (nor free the requests) until Wait returns. The thread is
// started on first use, so engines without constrained requests never create it.
#pragma once

#include <condition_variable>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "engine/request_state.h"

namespace kiln {

class MaskWorker final {
 public:
  MaskWorker() = default;
  ~MaskWorker();
  MaskWorker(const MaskWorker&) = delete;
  MaskWorker& operator=(const MaskWorker&) = delete;

  // Starts filling the masks of `requests` (each has a constraint) on the worker thread.
  void Start(std::span<RequestState* const> requests);
  // Blocks until the masks of the last Start are filled; returns at once when none is running.
  void Wait();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestState*> pending_;  // guarded by mu_
  bool busy_ = false;                // a Start's masks are being filled (guarded by mu_)
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kiln
