#include "backend/cuda/device_timeline.h"

#include <algorithm>
#include <cstddef>

#include "backend/cuda/cuda_util.h"

namespace kiln::cuda {

DeviceTimelineRecorder::~DeviceTimelineRecorder() {
  for (const Piece& p : pieces_) {
    spare_events_.push_back(p.begin);
    if (p.end != nullptr) spare_events_.push_back(p.end);
  }
  if (last_end_ != nullptr) spare_events_.push_back(last_end_);
  for (cudaEvent_t e : spare_events_) cudaEventDestroy(e);
}

cudaEvent_t DeviceTimelineRecorder::NewEvent() {
  if (!spare_events_.empty()) {
    cudaEvent_t e = spare_events_.back();
    spare_events_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  if (cudaEventCreate(&e) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return e;
}

cudaEvent_t DeviceTimelineRecorder::OpenPiece() {
  cudaEvent_t e = NewEvent();
  if (e != nullptr) pieces_.push_back({e, nullptr});
  return e;
}

void DeviceTimelineRecorder::Begin(cudaStream_t stream) {
  cudaEvent_t e = OpenPiece();
  if (e != nullptr) cudaEventRecord(e, stream);
}

void DeviceTimelineRecorder::End(cudaStream_t stream) {
  if (pieces_.empty() || pieces_.back().end != nullptr) return;
  cudaEvent_t e = NewEvent();
  if (e == nullptr) return;
  cudaEventRecord(e, stream);
  pieces_.back().end = e;
}

Status DeviceTimelineRecorder::Collect(cudaStream_t stream, bool wait, bool reset,
                                       DeviceTimeline* out) {
  if (wait) KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  size_t done = 0;
  for (; done < pieces_.size(); ++done) {
    Piece& p = pieces_[done];
    if (p.end == nullptr) {  // a failed launch: drop the piece
      spare_events_.push_back(p.begin);
      continue;
    }
    if (cudaEventQuery(p.end) != cudaSuccess) {
      cudaGetLastError();
      break;
    }
    float busy_ms = 0, gap_ms = 0;
    KILN_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&busy_ms, p.begin, p.end));
    if (last_end_ != nullptr) {
      KILN_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&gap_ms, last_end_, p.begin));
      timeline_.idle_s += std::max(gap_ms, 0.0f) * 1e-3;
      spare_events_.push_back(last_end_);
    }
    timeline_.busy_s += busy_ms * 1e-3;
    ++timeline_.num_pieces;
    spare_events_.push_back(p.begin);
    last_end_ = p.end;
  }
  pieces_.erase(pieces_.begin(), pieces_.begin() + static_cast<std::ptrdiff_t>(done));
  if (out != nullptr) *out = timeline_;
  if (reset) {
    timeline_ = DeviceTimeline{};
    if (last_end_ != nullptr) spare_events_.push_back(last_end_);
    last_end_ = nullptr;
  }
  return Status::Ok();
}

}  // namespace kiln::cuda
