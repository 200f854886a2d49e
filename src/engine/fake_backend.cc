#include "engine/fake_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace kiln {
namespace {

uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float Unit(uint64_t h) { return static_cast<float>(Mix(h) >> 40) * (1.0f / 16777216.0f); }

}  // namespace

FakeBackend::FakeBackend(int vocab_size, int hidden_size, int block_size, int64_t num_kv_blocks,
                         std::vector<int32_t> eos_token_ids, int max_position_embeddings)
    : block_size_(block_size), num_kv_blocks_(num_kv_blocks) {
  config_.architecture = "fake";
  config_.vocab_size = vocab_size;
  config_.hidden_size = hidden_size;
  config_.num_hidden_layers = 1;
  config_.max_position_embeddings = max_position_embeddings;
  config_.eos_token_ids = std::move(eos_token_ids);
  config_.bos_token_id = 1;
  cache_.assign(static_cast<size_t>(num_kv_blocks * block_size), 0);
}

Status FakeBackend::Forward(const ForwardBatch& b) {
  ++num_forward_calls_;
  if (fail_after_ > 0 && --fail_after_ == 0) return Status::Internal("injected Forward failure");
  const int n = b.num_tokens();
  const int s = b.num_seqs();
  auto bad = [](const std::string& m) { return Status::InvalidArgument("FakeBackend: " + m); };
  if (b.positions.size() != static_cast<size_t>(n) ||
      b.slot_mapping.size() != static_cast<size_t>(n))
    return bad("positions / slot_mapping size");
  if (b.cu_seqlens_q.size() != static_cast<size_t>(s + 1) || b.cu_seqlens_q[0] != 0 ||
      b.cu_seqlens_q[static_cast<size_t>(s)] != n)
    return bad("cu_seqlens_q");
  if (b.block_tables.size() != static_cast<size_t>(s) * static_cast<size_t>(b.max_blocks_per_seq))
    return bad("block_tables size");
  KILN_RETURN_IF_ERROR(ResolveDeferredTokens(b, sampled_ids_, &token_ids_));
  num_deferred_tokens_ += static_cast<int64_t>(b.deferred_tokens.size());
  if (forward_hook_) forward_hook_();
  bool all_one = s > 0;
  // Write every new token's KV first (like each layer of a real model does).
  for (int i = 0; i < s; ++i) {
    const int q0 = b.cu_seqlens_q[static_cast<size_t>(i)];
    const int q1 = b.cu_seqlens_q[static_cast<size_t>(i) + 1];
    if (q1 - q0 != 1) all_one = false;
    const int32_t* table = b.block_tables.data() + static_cast<size_t>(i) * b.max_blocks_per_seq;
    for (int t = q0; t < q1; ++t) {
      const int pos = b.positions[static_cast<size_t>(t)];
      if (pos != b.seq_lens[static_cast<size_t>(i)] - (q1 - t))
        return bad("position/seq_len mismatch");
      if (pos / block_size_ >= b.max_blocks_per_seq) return bad("position past the block table");
      const int32_t block = table[pos / block_size_];
      if (block < 0 || block >= num_kv_blocks_) return bad("invalid block id in block table");
      const int64_t slot = int64_t{block} * block_size_ + pos % block_size_;
      if (slot != b.slot_mapping[static_cast<size_t>(t)])
        return bad("slot_mapping disagrees with block table");
      const int32_t tok = token_ids_[static_cast<size_t>(t)];
      if (tok < 0 || tok >= config_.vocab_size) return bad("token id out of range");
      cache_[static_cast<size_t>(slot)] =
          Mix((static_cast<uint64_t>(static_cast<uint32_t>(tok)) << 32) ^
              static_cast<uint64_t>(pos)) |
          1;
    }
  }
  if (all_one != b.is_decode_only) return bad("is_decode_only flag wrong");
  num_tokens_computed_ += n;
  // Each needed row reads its sequence's KV for positions 0..pos.
  auto row_hash = [&](int row, uint64_t* out) -> Status {
    int i = static_cast<int>(std::upper_bound(b.cu_seqlens_q.begin(), b.cu_seqlens_q.end(), row) -
                             b.cu_seqlens_q.begin()) -
            1;
    const int32_t* table = b.block_tables.data() + static_cast<size_t>(i) * b.max_blocks_per_seq;
    const int pos = b.positions[static_cast<size_t>(row)];
    uint64_t h = 0x1234;
    for (int p = 0; p <= pos; ++p) {
      const uint64_t v = cache_[static_cast<size_t>(int64_t{table[p / block_size_]} * block_size_ +
                                                    p % block_size_)];
      if (v == 0) return bad("read of a never-written KV slot at position " + std::to_string(p));
      h = Mix(h ^ v);
    }
    *out = h;
    return Status::Ok();
  };
  logits_hashes_.resize(b.logits_indices.size());
  for (size_t r = 0; r < b.logits_indices.size(); ++r) {
    KILN_RETURN_IF_ERROR(row_hash(b.logits_indices[r], &logits_hashes_[r]));
  }
  hidden_hashes_.resize(b.hidden_indices.size());
  for (size_t r = 0; r < b.hidden_indices.size(); ++r) {
    KILN_RETURN_IF_ERROR(row_hash(b.hidden_indices[r], &hidden_hashes_[r]));
  }
  return Status::Ok();
}

void FakeBackend::RowLogits(uint64_t h, float* out) const {
  for (int v = 0; v < config_.vocab_size; ++v)
    out[v] = 4.0f * Unit(h * 31 + static_cast<uint64_t>(v));
}

Status FakeBackend::SampleAsync(std::span<const SamplingRow> rows) {
  if (sample_pending_) return Status::FailedPrecondition("FakeBackend: SampleAsync twice");
  if (sample_hook_) sample_hook_(rows);
  std::vector<SampleResult>* results = &samples_;
  if (rows.size() != logits_hashes_.size())
    return Status::InvalidArgument("FakeBackend: row count");
  sample_pending_ = true;
  sampled_ids_.assign(rows.size(), 0);
  sample_status_ = Status::Ok();
  const int V = config_.vocab_size;
  results->resize(rows.size());
  std::vector<float> logits(static_cast<size_t>(V)), processed(static_cast<size_t>(V));
  for (size_t r = 0; r < rows.size(); ++r) {
    const SamplingRow& row = rows[r];
    RowLogits(logits_hashes_[r], logits.data());
    float mx = *std::max_element(logits.begin(), logits.end());
    double z = 0;
    for (float l : logits) z += std::exp(static_cast<double>(l - mx));
    const float lse = mx + static_cast<float>(std::log(z));
    processed = logits;
    const float ninf = -std::numeric_limits<float>::infinity();
    for (int32_t id : row.banned_token_ids) processed[static_cast<size_t>(id)] = ninf;
    if (row.allowed_token_bitmask != nullptr) {
      for (int v = 0; v < V; ++v) {
        if (((row.allowed_token_bitmask[v / 32] >> (v % 32)) & 1u) == 0)
          processed[static_cast<size_t>(v)] = ninf;
      }
    }
    int best = -1;
    for (int v = 0; v < V; ++v) {
      if (processed[static_cast<size_t>(v)] == ninf) continue;
      if (best < 0 || processed[static_cast<size_t>(v)] > processed[static_cast<size_t>(best)])
        best = v;
    }
    if (best < 0) {
      sample_status_ = Status::InvalidArgument("FakeBackend: every token masked");
      return Status::Ok();  // reported by WaitSample, like a device-side failure
    }
    int chosen = best;
    if (row.temperature > 0.0f) {
      double total = 0;
      for (int v = 0; v < V; ++v) {
        if (processed[static_cast<size_t>(v)] != ninf)
          total +=
              std::exp((processed[static_cast<size_t>(v)] - processed[static_cast<size_t>(best)]) /
                       row.temperature);
      }
      const double target = SamplingUniform(row.seed, row.step) * total;
      double acc = 0;
      for (int v = 0; v < V; ++v) {
        if (processed[static_cast<size_t>(v)] == ninf) continue;
        acc += std::exp((processed[static_cast<size_t>(v)] - processed[static_cast<size_t>(best)]) /
                        row.temperature);
        chosen = v;
        if (acc > target) break;
      }
    }
    SampleResult& res = (*results)[r];
    res = SampleResult{};
    res.token_id = chosen;
    sampled_ids_[r] = chosen;
    res.logprob = logits[static_cast<size_t>(chosen)] - lse;
    for (int32_t id : row.requested_token_ids)
      res.requested.push_back({id, logits[static_cast<size_t>(id)] - lse});
    if (row.num_top_logprobs > 0) {
      std::vector<int32_t> ids(static_cast<size_t>(V));
      for (int v = 0; v < V; ++v) ids[static_cast<size_t>(v)] = v;
      std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
        return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)];
      });
      for (int k = 0; k < std::min(row.num_top_logprobs, V); ++k) {
        res.top.push_back({ids[static_cast<size_t>(k)],
                           logits[static_cast<size_t>(ids[static_cast<size_t>(k)])] - lse});
      }
    }
  }
  return Status::Ok();
}

Status FakeBackend::WaitSample(std::vector<SampleResult>* results) {
  if (!sample_pending_)
    return Status::FailedPrecondition("FakeBackend: WaitSample without SampleAsync");
  sample_pending_ = false;
  KILN_RETURN_IF_ERROR(sample_status_);
  results->swap(samples_);
  samples_.clear();
  return Status::Ok();
}

Status FakeBackend::AllocateHostKvPool(int64_t num_records) {
  if (num_records <= 0 || num_host_records_ != 0) {
    return Status::InvalidArgument("FakeBackend: bad host pool allocation");
  }
  host_pool_.assign(static_cast<size_t>(num_records * kv_block_record_bytes()), 0);
  num_host_records_ = num_records;
  return Status::Ok();
}

StatusOr<uint64_t> FakeBackend::CopyKvBlocks(KvCopyDirection direction,
                                             std::span<const KvBlockCopy> copies) {
  if (num_host_records_ == 0) return Status::FailedPrecondition("FakeBackend: no host pool");
  KILN_RETURN_IF_ERROR(ValidateKvBlockCopies(copies, num_kv_blocks_, num_host_records_));
  PendingCopy pending{direction, {copies.begin(), copies.end()}, copy_latency_polls_,
                      copy_latency_polls_ > 0};
  pending.fail = direction == KvCopyDirection::kDeviceToHost ? fail_stores_ : fail_loads_;
  const uint64_t ticket = next_ticket_++;
  if (pending.polls_left == 0 && !pending.fail) RunCopy(pending);
  copies_.emplace(ticket, std::move(pending));
  return ticket;
}

void FakeBackend::RunCopy(const PendingCopy& c) {
  const size_t bytes = static_cast<size_t>(kv_block_record_bytes());
  for (const KvBlockCopy& k : c.copies) {
    uint8_t* rec = host_pool_.data() + static_cast<size_t>(k.host_record) * bytes;
    auto* slots = reinterpret_cast<uint8_t*>(cache_.data() +
                                             static_cast<size_t>(k.device_block) * block_size_);
    if (c.direction == KvCopyDirection::kDeviceToHost) {
      std::memcpy(rec, slots, bytes);
    } else {
      std::memcpy(slots, rec, bytes);
    }
    ++num_blocks_copied_;
  }
}

StatusOr<bool> FakeBackend::KvCopyDone(uint64_t ticket, double* seconds) {
  *seconds = 0.0;
  auto it = copies_.find(ticket);
  if (it == copies_.end()) return true;
  if (it->second.polls_left > 0 && --it->second.polls_left > 0) return false;
  if (it->second.fail) {
    if (it->second.direction == KvCopyDirection::kHostToDevice) {
      for (const KvBlockCopy& k : it->second.copies) {
        std::fill_n(cache_.begin() + static_cast<ptrdiff_t>(k.device_block) * block_size_,
                    block_size_, uint64_t{0xBADC0FFEE});
      }
    }
    ++num_failed_copies_;
    copies_.erase(it);
    return Status::Internal("FakeBackend: injected KV copy failure");
  }
  if (it->second.deferred) RunCopy(it->second);
  *seconds = 1e-6 * static_cast<double>(it->second.copies.size());
  copies_.erase(it);
  return true;
}

Status FakeBackend::GetLogits(std::vector<float>* logits) {
  const size_t V = static_cast<size_t>(config_.vocab_size);
  logits->resize(logits_hashes_.size() * V);
  for (size_t r = 0; r < logits_hashes_.size(); ++r)
    RowLogits(logits_hashes_[r], logits->data() + r * V);
  return Status::Ok();
}

Status FakeBackend::GetHidden(std::vector<float>* hidden) {
  const size_t H = static_cast<size_t>(config_.hidden_size);
  hidden->resize(hidden_hashes_.size() * H);
  for (size_t r = 0; r < hidden_hashes_.size(); ++r) {
    for (size_t j = 0; j < H; ++j) (*hidden)[r * H + j] = Unit(hidden_hashes_[r] + j * 7919) - 0.5f;
  }
  return Status::Ok();
}

}  // namespace kiln
