// DeviceTimelineRecorder: how long a stream's queued work kept the GPU busy and how long the GPU
// sat idle between pieces of it (the host overhead async scheduling hides). Each piece of work is
// bracketed by two CUDA events; completed pieces are folded into a DeviceTimeline (busy = inside
// pieces, idle = from one piece's end to the next one's begin). Events are pooled and reused.
//
// Used by CudaBackend when CudaBackendOptions::record_device_timeline is set (benchmarks).
// Thread-safety: one thread (the backend's).
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "kiln/status.h"

namespace kiln::cuda {

class DeviceTimelineRecorder final {
 public:
  DeviceTimelineRecorder() = default;
  // Destroys the events; the caller has synchronized the stream they were recorded on.
  ~DeviceTimelineRecorder();
  DeviceTimelineRecorder(const DeviceTimelineRecorder&) = delete;
  DeviceTimelineRecorder& operator=(const DeviceTimelineRecorder&) = delete;

  // Opens a piece whose begin event the caller records (nullptr when no event could be created:
  // the piece is then not timed).
  cudaEvent_t OpenPiece();
  // Opens a piece and records its begin on `stream`.
  void Begin(cudaStream_t stream);
  // Records the end of the open piece on `stream` (no-op without one).
  void End(cudaStream_t stream);
  // Folds the completed pieces in (all of them after synchronizing `stream` when `wait`); copies
  // the totals to *out when non-null, then clears them when `reset`.
  Status Collect(cudaStream_t stream, bool wait, bool reset, DeviceTimeline* out);

 private:
  cudaEvent_t NewEvent();

  struct Piece {
    cudaEvent_t begin = nullptr, end = nullptr;
  };
  std::vector<Piece> pieces_;  // queued, not folded in yet
  std::vector<cudaEvent_t> spare_events_;
  cudaEvent_t last_end_ = nullptr;  // end of the last folded piece
  DeviceTimeline timeline_;
};

}  // namespace kiln::cuda
