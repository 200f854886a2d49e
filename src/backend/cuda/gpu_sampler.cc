#include "backend/cuda/gpu_sampler.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>

#include "kernels/sampling.h"

namespace kiln::cuda {
namespace {

constexpr int kSampleChunkRows = 64;

size_t AlignUp(size_t x, size_t a) { return (x + a - 1) / a * a; }

}  // namespace

GpuSampler::~GpuSampler() {
  if (done_ != nullptr) {
    cudaEventSynchronize(done_);
    cudaEventDestroy(done_);
  }
}

Status GpuSampler::Init(int max_rows, int vocab_size) {
  if (done_ == nullptr) {
    KILN_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  max_rows_ = max_rows;
  vocab_size_ = vocab_size;
  KILN_RETURN_IF_ERROR(
      workspace_.Allocate(kernels::SampleWorkspaceBytes(kSampleChunkRows, vocab_size)));
  // Outputs: ids + logprobs + top ids/logprobs per row, plus 1 MiB of requested logprobs.
  const size_t out_bytes =
      static_cast<size_t>(max_rows) * (4 + 4 + kMaxTopLogprobs * 8) + 4 * 256 + (size_t{1} << 20);
  KILN_RETURN_IF_ERROR(out_dev_.Allocate(out_bytes));
  KILN_RETURN_IF_ERROR(out_host_.Allocate(out_bytes));
  return Status::Ok();
}

Status GpuSampler::Sample(const float* logits, std::span<const SamplingRow> rows,
                          std::vector<SampleResult>* results, cudaStream_t stream) {
  KILN_RETURN_IF_ERROR(Launch(logits, rows, stream));
  return Wait(results);
}

bool GpuSampler::Ready() const {
  if (!pending_) return true;
  const cudaError_t e = cudaEventQuery(done_);
  if (e == cudaErrorNotReady) return false;
  cudaGetLastError();  // an error is reported by Wait
  return true;
}

Status GpuSampler::Launch(const float* logits, std::span<const SamplingRow> rows,
                          cudaStream_t stream, cudaEvent_t before_upload) {
  if (pending_) return Status::FailedPrecondition("GpuSampler::Launch before Wait");
  if (static_cast<int>(rows.size()) > max_rows_) {
    return Status::InvalidArgument("Sample got " + std::to_string(rows.size()) +
                                   " rows, more than " + std::to_string(max_rows_));
  }
  const int num_rows = static_cast<int>(rows.size());
  const int vocab = vocab_size_;
  const int mask_words = (vocab + 31) / 32;
  std::vector<kernels::SampleRowParams> params(rows.size());
  std::vector<int32_t> penalty_ids, penalty_counts, banned;
  std::vector<int32_t>& requested = requested_;
  requested.clear();
  std::vector<uint32_t> masks;
  bool any_random = false, any_logprobs = false;
  int max_top = 0;
  std::unordered_map<int32_t, int32_t> counts;
  auto in_vocab = [&](int32_t id) { return id >= 0 && id < vocab; };
  for (int r = 0; r < num_rows; ++r) {
    const SamplingRow& row = rows[static_cast<size_t>(r)];
    kernels::SampleRowParams& p = params[static_cast<size_t>(r)];
    p.temperature = row.temperature;
    p.top_k = row.top_k;
    p.top_p = row.top_p;
    p.min_p = row.min_p;
    p.uniform = SamplingUniform(row.seed, row.step);
    p.repetition_penalty = row.repetition_penalty;
    p.presence_penalty = row.presence_penalty;
    p.frequency_penalty = row.frequency_penalty;
    if (row.num_top_logprobs > kMaxTopLogprobs) {
      return Status::InvalidArgument("at most " + std::to_string(kMaxTopLogprobs) +
                                     " top logprobs per token");
    }
    p.num_top_logprobs = std::min(row.num_top_logprobs, vocab);
    any_random |= row.temperature > 0.0f;
    any_logprobs |= row.num_top_logprobs >= 0;
    max_top = std::max(max_top, p.num_top_logprobs);
    if (row.repetition_penalty != 1.0f || row.presence_penalty != 0.0f ||
        row.frequency_penalty != 0.0f) {
      counts.clear();
      for (int32_t id : row.prompt_token_ids) {
        if (!in_vocab(id)) return Status::InvalidArgument("prompt token id " + std::to_string(id) + " outside vocabulary");
        counts.emplace(id, 0);
      }
      for (int32_t id : row.output_token_ids) {
        if (!in_vocab(id)) return Status::InvalidArgument("output token id " + std::to_string(id) + " outside vocabulary");
        ++counts[id];
      }
      p.penalty_begin = static_cast<int>(penalty_ids.size());
      for (const auto& [id, count] : counts) {
        penalty_ids.push_back(id);
        penalty_counts.push_back(count);
      }
      p.penalty_end = static_cast<int>(penalty_ids.size());
    }
    p.ban_begin = static_cast<int>(banned.size());
    for (int32_t id : row.banned_token_ids) {
      if (!in_vocab(id)) return Status::InvalidArgument("banned token id " + std::to_string(id) + " outside vocabulary");
      banned.push_back(id);
    }
    p.ban_end = static_cast<int>(banned.size());
    if (row.allowed_token_bitmask != nullptr) {
      p.bitmask_offset = static_cast<int64_t>(masks.size());
      masks.insert(masks.end(), row.allowed_token_bitmask, row.allowed_token_bitmask + mask_words);
    }
    p.requested_begin = static_cast<int>(requested.size());
    if (row.num_top_logprobs >= 0) {
      for (int32_t id : row.requested_token_ids) {
        if (!in_vocab(id)) return Status::InvalidArgument("requested token id " + std::to_string(id) + " outside vocabulary");
        requested.push_back(id);
      }
    }
    p.requested_end = static_cast<int>(requested.size());
  }
  // Stage all inputs in one pinned block → one upload.
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t at = off;
    off += AlignUp(bytes, 64);
    return at;
  };
  const size_t o_params = take(params.size() * sizeof(kernels::SampleRowParams));
  const size_t o_pids = take(penalty_ids.size() * 4);
  const size_t o_pcounts = take(penalty_counts.size() * 4);
  const size_t o_banned = take(banned.size() * 4);
  const size_t o_masks = take(masks.size() * 4);
  const size_t o_requested = take(requested.size() * 4);
  if (in_host_.size_bytes() < off) {
    KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    KILN_RETURN_IF_ERROR(in_host_.Allocate(off * 2));
    KILN_RETURN_IF_ERROR(in_dev_.Allocate(off * 2));
  }
  char* h = in_host_.as<char>();
  std::memcpy(h + o_params, params.data(), params.size() * sizeof(kernels::SampleRowParams));
  std::memcpy(h + o_pids, penalty_ids.data(), penalty_ids.size() * 4);
  std::memcpy(h + o_pcounts, penalty_counts.data(), penalty_counts.size() * 4);
  std::memcpy(h + o_banned, banned.data(), banned.size() * 4);
  std::memcpy(h + o_masks, masks.data(), masks.size() * 4);
  std::memcpy(h + o_requested, requested.data(), requested.size() * 4);
  if (before_upload != nullptr) KILN_CUDA_RETURN_IF_ERROR(cudaEventRecord(before_upload, stream));
  KILN_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(in_dev_.get(), h, off, cudaMemcpyHostToDevice, stream));
  char* d = in_dev_.as<char>();

  // Outputs: [token ids | logprobs | top ids | top logprobs | requested logprobs].
  const size_t o_tok = 0;
  const size_t o_lp = AlignUp(num_rows * 4, 64);
  const size_t o_top_ids = o_lp + AlignUp(num_rows * 4, 64);
  const size_t o_top_lp = o_top_ids + AlignUp(static_cast<size_t>(num_rows) * std::max(max_top, 1) * 4, 64);
  const size_t o_req = o_top_lp + AlignUp(static_cast<size_t>(num_rows) * std::max(max_top, 1) * 4, 64);
  const size_t out_total = o_req + requested.size() * 4;
  if (out_total > out_dev_.size_bytes()) {
    return Status::InvalidArgument("too many requested logprobs in one step");
  }
  char* od = out_dev_.as<char>();
  kernels::SampleInputs in;
  in.logits = logits;
  in.num_rows = num_rows;
  in.vocab_size = vocab;
  in.rows = reinterpret_cast<const kernels::SampleRowParams*>(d + o_params);
  in.penalty_token_ids = reinterpret_cast<const int32_t*>(d + o_pids);
  in.penalty_output_counts = reinterpret_cast<const int32_t*>(d + o_pcounts);
  in.banned_token_ids = reinterpret_cast<const int32_t*>(d + o_banned);
  in.bitmasks = reinterpret_cast<const uint32_t*>(d + o_masks);
  in.requested_token_ids = reinterpret_cast<const int32_t*>(d + o_requested);
  in.max_top_logprobs = std::max(max_top, 1);
  in.any_random = any_random;
  in.any_logprobs = any_logprobs;
  kernels::SampleOutputs out;
  out.token_ids = reinterpret_cast<int32_t*>(od + o_tok);
  out.logprobs = reinterpret_cast<float*>(od + o_lp);
  out.top_ids = reinterpret_cast<int32_t*>(od + o_top_ids);
  out.top_logprobs = reinterpret_cast<float*>(od + o_top_lp);
  out.requested_logprobs = reinterpret_cast<float*>(od + o_req);
  KILN_CUDA_RETURN_IF_ERROR(
      kernels::LaunchSample(in, out, workspace_.get(), kSampleChunkRows, stream));
  KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out_host_.get(), od, out_total,
                                            cudaMemcpyDeviceToHost, stream));
  KILN_CUDA_RETURN_IF_ERROR(cudaEventRecord(done_, stream));
  pending_ = true;
  num_rows_ = num_rows;
  max_top_stride_ = in.max_top_logprobs;
  o_lp_ = o_lp;
  o_top_ids_ = o_top_ids;
  o_top_lp_ = o_top_lp;
  o_req_ = o_req;
  num_top_.resize(rows.size());
  requested_begin_.resize(rows.size());
  requested_end_.resize(rows.size());
  for (int r = 0; r < num_rows; ++r) {
    num_top_[static_cast<size_t>(r)] = params[static_cast<size_t>(r)].num_top_logprobs;
    requested_begin_[static_cast<size_t>(r)] = params[static_cast<size_t>(r)].requested_begin;
    requested_end_[static_cast<size_t>(r)] = params[static_cast<size_t>(r)].requested_end;
  }
  return Status::Ok();
}

Status GpuSampler::Wait(std::vector<SampleResult>* results) {
  if (!pending_) return Status::FailedPrecondition("GpuSampler::Wait without Launch");
  pending_ = false;
  KILN_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(done_));
  const int num_rows = num_rows_;
  const char* oh = out_host_.as<char>();
  const int32_t* tok = reinterpret_cast<const int32_t*>(oh);
  const float* lp = reinterpret_cast<const float*>(oh + o_lp_);
  const int32_t* top_ids = reinterpret_cast<const int32_t*>(oh + o_top_ids_);
  const float* top_lp = reinterpret_cast<const float*>(oh + o_top_lp_);
  const float* req_lp = reinterpret_cast<const float*>(oh + o_req_);
  results->assign(static_cast<size_t>(num_rows), SampleResult{});
  for (int r = 0; r < num_rows; ++r) {
    SampleResult& res = (*results)[static_cast<size_t>(r)];
    if (tok[r] < 0) return Status::InvalidArgument("every token is banned or masked");
    res.token_id = tok[r];
    const int num_top = num_top_[static_cast<size_t>(r)];
    if (num_top < 0) continue;
    res.logprob = lp[r];
    for (int i = 0; i < num_top; ++i) {
      const size_t k = static_cast<size_t>(r) * max_top_stride_ + i;
      res.top.push_back({top_ids[k], top_lp[k]});
    }
    const size_t row = static_cast<size_t>(r);
    for (int e = requested_begin_[row]; e < requested_end_[row]; ++e) {
      res.requested.push_back({requested_[static_cast<size_t>(e)], req_lp[e]});
    }
  }
  return Status::Ok();
}

}  // namespace kiln::cuda
