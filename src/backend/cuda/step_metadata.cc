#include "backend/cuda/step_metadata.h"

#include <algorithm>
#include <cstring>

namespace kiln::cuda {

MetaLayout PackLayout(int num_tokens, int num_seqs, int num_logits, int num_hidden,
                      int blocks_per_seq, int num_deferred) {
  MetaLayout l;
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t at = off;
    off += (bytes + 15) / 16 * 16;
    return at;
  };
  l.slot_mapping = take(static_cast<size_t>(num_tokens) * 8);
  l.token_ids = take(static_cast<size_t>(num_tokens) * 4);
  l.positions = take(static_cast<size_t>(num_tokens) * 4);
  l.cu_seqlens_q = take(static_cast<size_t>(num_seqs + 1) * 4);
  l.seq_lens = take(static_cast<size_t>(num_seqs) * 4);
  l.logits_indices = take(static_cast<size_t>(num_logits) * 4);
  l.hidden_indices = take(static_cast<size_t>(num_hidden) * 4);
  l.block_tables = take(static_cast<size_t>(num_seqs) * blocks_per_seq * 4);
  l.deferred = take(static_cast<size_t>(num_deferred) * 8);
  l.total = off;
  return l;
}

StepMetadata::~StepMetadata() {
  for (cudaEvent_t e : done_) {
    if (e != nullptr) cudaEventDestroy(e);
  }
}

Status StepMetadata::Init(int max_tokens, int max_seqs, int max_logits, int max_blocks_per_seq) {
  const size_t capacity =
      PackLayout(max_tokens, max_seqs, max_logits, max_tokens, max_blocks_per_seq, max_tokens)
          .total;
  KILN_RETURN_IF_ERROR(device_.Allocate(capacity));
  for (PinnedBuffer& b : host_) KILN_RETURN_IF_ERROR(b.Allocate(capacity));
  for (cudaEvent_t& e : done_) {
    KILN_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  return Status::Ok();
}

Status StepMetadata::Pack(const ForwardBatch& b, int padded_seqs, int padded_stride,
                          RunShape* shape) {
  const int n = b.num_tokens(), s = b.num_seqs();
  const int ps = std::max(padded_seqs, s);
  const int pn = n + (ps - s);  // padded rows are single-token decode rows
  const int nl = padded_seqs > s ? ps : static_cast<int>(b.logits_indices.size());
  const int nh = static_cast<int>(b.hidden_indices.size());
  // Block tables keep the batch's stride, except inside graphs (fixed at the device maximum).
  const int stride = padded_seqs > 0 ? padded_stride : b.max_blocks_per_seq;
  const int nd = static_cast<int>(b.deferred_tokens.size());
  const MetaLayout l = PackLayout(pn, ps, nl, nh, stride, nd);
  cur_ ^= 1;
  KILN_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(done_[cur_]));
  char* host = host_[cur_].as<char>();
  auto i32 = [&](size_t off) { return reinterpret_cast<int32_t*>(host + off); };
  int64_t* slots = reinterpret_cast<int64_t*>(host + l.slot_mapping);
  std::memcpy(slots, b.slot_mapping.data(), static_cast<size_t>(n) * 8);
  std::memcpy(i32(l.token_ids), b.token_ids.data(), static_cast<size_t>(n) * 4);
  std::memcpy(i32(l.positions), b.positions.data(), static_cast<size_t>(n) * 4);
  std::memcpy(i32(l.cu_seqlens_q), b.cu_seqlens_q.data(), static_cast<size_t>(s + 1) * 4);
  std::memcpy(i32(l.seq_lens), b.seq_lens.data(), static_cast<size_t>(s) * 4);
  if (!b.logits_indices.empty()) {
    std::memcpy(i32(l.logits_indices), b.logits_indices.data(), b.logits_indices.size() * 4);
  }
  if (nh > 0) {
    std::memcpy(i32(l.hidden_indices), b.hidden_indices.data(), static_cast<size_t>(nh) * 4);
  }
  static_assert(sizeof(DeferredToken) == 8);
  if (nd > 0) std::memcpy(i32(l.deferred), b.deferred_tokens.data(), static_cast<size_t>(nd) * 8);
  int32_t* tables = i32(l.block_tables);
  if (stride == b.max_blocks_per_seq) {
    std::memcpy(tables, b.block_tables.data(), b.block_tables.size() * 4);
  } else {
    const int width = std::min(stride, b.max_blocks_per_seq);  // validated: enough for seq_lens
    for (int i = 0; i < s; ++i) {
      std::memcpy(tables + static_cast<size_t>(i) * stride,
                  b.block_tables.data() + static_cast<size_t>(i) * b.max_blocks_per_seq,
                  static_cast<size_t>(width) * 4);
    }
  }
  // Padding rows: token 0 at position 0 of a 1-token sequence over block 0; no KV write.
  for (int i = s; i < ps; ++i) {
    const int row = n + (i - s);
    i32(l.token_ids)[row] = 0;
    i32(l.positions)[row] = 0;
    slots[row] = -1;
    i32(l.cu_seqlens_q)[i + 1] = row + 1;
    i32(l.seq_lens)[i] = 1;
    tables[static_cast<size_t>(i) * stride] = 0;
    i32(l.logits_indices)[i] = row;
  }
  bool identity = nl == pn;
  for (int i = 0; identity && i < nl; ++i) identity = i32(l.logits_indices)[i] == i;
  int max_q = 0, max_len = 0;
  for (int i = 0; i < s; ++i) {
    max_q = std::max(max_q, b.cu_seqlens_q[i + 1] - b.cu_seqlens_q[i]);
    max_len = std::max(max_len, b.seq_lens[static_cast<size_t>(i)]);
  }
  shape->num_tokens = pn;
  shape->num_seqs = ps;
  shape->num_logits = nl;
  shape->num_hidden = nh;
  shape->max_seqlen_q = std::max(max_q, 1);
  shape->max_seq_len = max_len;
  shape->blocks_per_seq = stride;
  shape->logits_identity = identity;
  shape->meta = l;
  return Status::Ok();
}

Status StepMetadata::Upload(const RunShape& shape, cudaStream_t stream) {
  KILN_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device_.get(), host_[cur_].get(), shape.meta.total,
                                            cudaMemcpyHostToDevice, stream));
  KILN_CUDA_RETURN_IF_ERROR(cudaEventRecord(done_[cur_], stream));
  return Status::Ok();
}

}  // namespace kiln::cuda
