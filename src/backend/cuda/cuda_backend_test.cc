// CudaBackend against the HF transformers references in ../shared (tiny-qwen2, tiny-qwen3,
// stories260K) in float32 mode (max |Δ| ≤ 1e-3 × max |ref|, greedy ids exact) and bf16 mode
// (≤ 3e-2 × max |ref|, top-1 agreement ≥ 95%; tiny-qwen2: HF transformers' own bf16 error, see
// ToleranceFor); FP8 weights on stories260K; batching / chunked prefill / CUDA graphs against
// single eager runs; GPU sampling through the backend; KV sizing from gpu_memory_utilization.
// Every test skips when no CUDA device is present.
#include "backend/cuda/cuda_backend.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "backend/backend_test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "model/safetensors.h"
#include "model/test_data.h"

namespace kiln {
namespace {

using testing::Argmax;
using testing::LoadReferencePrompts;
using testing::PrefixAndWholeBatch;
using testing::RelativeError;
using testing::SharedPath;
using testing::Top1Agreement;
using testing::SingleSequenceBatch;

constexpr int kBlockSize = 16;

std::unique_ptr<Backend> MakeBackend(const std::string& path, const std::string& dtype,
                                     bool graphs = true, int64_t num_blocks = 64,
                                     bool timeline = false, const std::string& load_format = "") {
  auto model = testing::LoadModelOrFail(path, load_format);
  if (model == nullptr) return nullptr;
  CudaBackendOptions o;
  o.block_size = kBlockSize;
  o.num_kv_blocks = num_blocks;
  o.max_num_batched_tokens = 1024;
  o.max_num_seqs = 320;  // logits rows of a teacher-forced 257-token forward
  o.enable_cuda_graphs = graphs;
  o.dtype = dtype;
  o.record_device_timeline = timeline;
  auto backend = CreateCudaBackend(model, o);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  return backend.ok() ? std::move(backend).value() : nullptr;
}

// Greedy decoding through Backend::Sample (temperature 0): prefill, then decode steps (these take
// the CUDA-graph path when graphs are on).
std::vector<int32_t> Greedy(Backend* backend, const std::vector<int32_t>& prompt, int steps) {
  std::vector<int32_t> out;
  ForwardBatch batch = SingleSequenceBatch(prompt, 0, kBlockSize, 64, false);
  int pos = static_cast<int>(prompt.size());
  SamplingRow row;
  std::vector<SampleResult> results;
  for (int s = 0; s < steps; ++s) {
    Status status = backend->Forward(batch);
    EXPECT_TRUE(status.ok()) << status.ToString();
    if (!status.ok()) break;
    status = backend->Sample(std::span<const SamplingRow>(&row, 1), &results);
    EXPECT_TRUE(status.ok()) << status.ToString();
    if (!status.ok()) break;
    out.push_back(results[0].token_id);
    batch = SingleSequenceBatch({results[0].token_id}, pos++, kBlockSize, 64, false);
  }
  return out;
}

struct Tolerance {
  double logits;
  double min_top1;
  bool greedy_exact;
};
// The bf16 bound for tiny-qwen2 is HF transformers' own bf16 on the same card by the same metric
// (scripts/hf_bf16_parity.py on the H100, PERFORMANCE.md "bf16 parity"): its sdpa path reaches
// 0.071 × max|ref| with top-1 93.6% on these prompts (eager 0.096), so a bf16 engine is held to
// that, not to 3e-2 (kiln: 0.026 – 0.060, top-1 ≥ 94.7%). tiny-qwen3 and stories260K keep 3e-2.
constexpr double kTinyQwen2HfBf16Error = 0.071;
constexpr double kTinyQwen2HfBf16Top1 = 0.936;

Tolerance ToleranceFor(const std::string& dtype, const std::string& model = "") {
  if (dtype == "float32") return Tolerance{1e-3, 1.0, true};
  if (model == "tiny-qwen2") return Tolerance{kTinyQwen2HfBf16Error, kTinyQwen2HfBf16Top1, false};
  return Tolerance{3e-2, 0.95, false};
}

void CheckTinyModel(const std::string& name, const std::string& dtype) {
  const std::string dir = SharedPath("models/" + name);
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/" << name;
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto backend = MakeBackend(dir, dtype);
  ASSERT_NE(backend, nullptr);
  const Tolerance tol = ToleranceFor(dtype, name);
  const int vocab = backend->config().vocab_size;
  const std::vector<testing::ReferencePrompt> prompts = LoadReferencePrompts(dir);
  ASSERT_FALSE(prompts.empty());
  for (size_t p = 0; p < prompts.size(); ++p) {
    const testing::ReferencePrompt& ref = prompts[p];
    ASSERT_TRUE(
        backend->Forward(SingleSequenceBatch(ref.AllIds(), 0, kBlockSize, 64, true, true)).ok());
    std::vector<float> logits, hidden;
    ASSERT_TRUE(backend->GetLogits(&logits).ok());
    ASSERT_TRUE(backend->GetHidden(&hidden).ok());
    const double err = RelativeError(logits, ref.logits);
    const double top1 = Top1Agreement(logits, ref.logits, vocab);
    std::printf("[parity] %s %s prompt %zu: logits max|d|/max|ref| = %.3g, top-1 %.3f\n",
                name.c_str(), dtype.c_str(), p, err, top1);
    EXPECT_LE(err, tol.logits) << name << " prompt " << p;
    EXPECT_LE(RelativeError(hidden, ref.hidden), tol.logits * 3) << name << " prompt " << p;
    EXPECT_GE(top1, tol.min_top1) << name << " prompt " << p;
    if (tol.greedy_exact) {
      // The reference's generated ids are compared up to where they stop being the argmax of the
      // reference's own teacher-forced logits (ReferencePrompt::ConsistentSteps).
      const size_t consistent = ref.ConsistentSteps(vocab);
      std::vector<int32_t> got =
          Greedy(backend.get(), ref.input_ids, static_cast<int>(ref.generated.size()));
      got.resize(std::min(got.size(), consistent));
      EXPECT_EQ(got,
                std::vector<int32_t>(ref.generated.begin(), ref.generated.begin() + consistent))
          << name << " prompt " << p;
      if (consistent < ref.generated.size()) {
        std::printf("[parity] %s prompt %zu: reference generated_ids leave their own argmax at "
                    "step %zu; compared up to there\n", name.c_str(), p, consistent);
      }
    }
  }
}

TEST(CudaBackendTest, TinyQwen2Float32MatchesReference) { CheckTinyModel("tiny-qwen2", "float32"); }
TEST(CudaBackendTest, TinyQwen3Float32MatchesReference) { CheckTinyModel("tiny-qwen3", "float32"); }
TEST(CudaBackendTest, TinyQwen2Bf16MatchesReference) { CheckTinyModel("tiny-qwen2", "bfloat16"); }
// Real trained weights; tie_word_embeddings with only lm_head.weight stored.
TEST(CudaBackendTest, TinyStories656KFloat32MatchesReference) {
  CheckTinyModel("tinystories-656k", "float32");
}

// float16 is not a compute dtype of the CUDA backend: refused before any device work (no GPU
// needed), naming the dtype.
TEST(CudaBackendTest, Float16IsRejectedUpFront) {
  const std::string dir = SharedPath("models/stories260K/hf");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K";
  auto model = testing::LoadModelOrFail(dir);
  ASSERT_NE(model, nullptr);
  CudaBackendOptions o;
  o.dtype = "float16";
  auto created = CreateCudaBackend(model, o);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(created.status().message().find("float16"), std::string::npos)
      << created.status().ToString();
}
TEST(CudaBackendTest, TinyQwen3Bf16MatchesReference) { CheckTinyModel("tiny-qwen3", "bfloat16"); }

void CheckStories(const std::string& dtype) {
  const std::string dir = SharedPath("models/stories260K/hf");
  const std::string ids_path = SharedPath("models/stories260K/greedy256.ids");
  if (dir.empty() || ids_path.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K";
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto backend = MakeBackend(dir, dtype);
  ASSERT_NE(backend, nullptr);
  const Tolerance tol = ToleranceFor(dtype);
  auto ref = SafetensorsFile::Open(dir + "/reference.safetensors");
  ASSERT_TRUE(ref.ok());
  auto ids = ReadSafetensorsInt32(**ref, "input_ids");
  auto ref_logits = ReadSafetensorsFloat(**ref, "logits");
  ASSERT_TRUE(ids.ok() && ref_logits.ok());
  ASSERT_TRUE(backend->Forward(SingleSequenceBatch(*ids, 0, kBlockSize, 64, true)).ok());
  std::vector<float> logits;
  ASSERT_TRUE(backend->GetLogits(&logits).ok());
  const double err = RelativeError(logits, *ref_logits);
  const double top1 = Top1Agreement(logits, *ref_logits, backend->config().vocab_size);
  std::printf("[parity] stories260K %s: logits max|d|/max|ref| = %.3g, top-1 %.3f\n",
              dtype.c_str(), err, top1);
  EXPECT_LE(err, tol.logits);
  EXPECT_GE(top1, tol.min_top1);
  const std::vector<int32_t> expected = testing::ReadIdsFile(ids_path);
  ASSERT_EQ(expected.size(), 256u);
  const std::vector<int32_t> got = Greedy(backend.get(), {1}, 256);
  size_t same = 0;
  for (size_t i = 0; i < std::min(got.size(), expected.size()); ++i) same += got[i] == expected[i];
  std::printf("[parity] stories260K %s: greedy256 %zu/256 ids equal\n", dtype.c_str(), same);
  if (tol.greedy_exact) EXPECT_EQ(got, expected);
}

// FP8 weights on real weights (stories260K; its down projection, 172 inputs, stays bf16: FP8
// needs in_features % 16 == 0): the 257-token prefill runs the W8A8 cuBLASLt path, a
// teacher-forced decode of the same ids the W8A16 GEMVs (fused norm / RoPE / SiLU forms, CUDA
// graphs); both against the HF float32 reference.
void CheckStoriesFp8(const std::string& scale) {
  const std::string dir = SharedPath("models/stories260K/hf");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K";
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto model = testing::LoadModelOrFail(dir);
  ASSERT_NE(model, nullptr);
  CudaBackendOptions o;
  o.block_size = kBlockSize;
  o.num_kv_blocks = 64;
  o.max_num_batched_tokens = 1024;
  o.max_num_seqs = 320;
  o.quantization = "fp8";
  o.quantization_scale = scale;
  auto created = CreateCudaBackend(model, o);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<Backend> backend = std::move(created).value();
  auto ref = SafetensorsFile::Open(dir + "/reference.safetensors");
  ASSERT_TRUE(ref.ok());
  auto ids = ReadSafetensorsInt32(**ref, "input_ids");
  auto ref_logits = ReadSafetensorsFloat(**ref, "logits");
  ASSERT_TRUE(ids.ok() && ref_logits.ok());
  const int vocab = backend->config().vocab_size;
  ASSERT_TRUE(backend->Forward(SingleSequenceBatch(*ids, 0, kBlockSize, 64, true)).ok());
  std::vector<float> logits;
  ASSERT_TRUE(backend->GetLogits(&logits).ok());
  const double err = RelativeError(logits, *ref_logits);
  const double top1 = Top1Agreement(logits, *ref_logits, vocab);
  // Teacher-forced decode: one token per step, logits of each step.
  std::vector<float> decoded;
  for (size_t t = 0; t < ids->size(); ++t) {
    ASSERT_TRUE(backend
                    ->Forward(SingleSequenceBatch({(*ids)[t]}, static_cast<int>(t), kBlockSize,
                                                  64, false))
                    .ok());
    std::vector<float> step;
    ASSERT_TRUE(backend->GetLogits(&step).ok());
    decoded.insert(decoded.end(), step.begin(), step.end());
  }
  const double decode_err = RelativeError(decoded, *ref_logits);
  const double decode_top1 = Top1Agreement(decoded, *ref_logits, vocab);
  std::printf("[parity] stories260K fp8 %s: prefill max|d|/max|ref| = %.3g, top-1 %.3f; decode "
              "%.3g, top-1 %.3f\n",
              scale.c_str(), err, top1, decode_err, decode_top1);
  EXPECT_LE(err, 0.1);
  EXPECT_GE(top1, 0.95);
  EXPECT_LE(decode_err, 0.1);
  EXPECT_GE(decode_top1, 0.95);
}

TEST(CudaBackendTest, Stories260KFp8PerChannel) { CheckStoriesFp8("per-channel"); }
TEST(CudaBackendTest, Stories260KFp8PerTensor) { CheckStoriesFp8("per-tensor"); }

TEST(CudaBackendTest, Fp8NeedsBf16Activations) {
  const std::string dir = SharedPath("models/stories260K/hf");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K";
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto model = testing::LoadModelOrFail(dir);
  ASSERT_NE(model, nullptr);
  CudaBackendOptions o;
  o.num_kv_blocks = 16;
  o.dtype = "float32";
  o.quantization = "fp8";
  auto created = CreateCudaBackend(model, o);
  ASSERT_FALSE(created.ok());
  EXPECT_NE(created.status().message().find("bfloat16"), std::string::npos)
      << created.status().ToString();
}

TEST(CudaBackendTest, Stories260KFloat32LogitsAndGreedy256) { CheckStories("float32"); }
TEST(CudaBackendTest, Stories260KBf16Logits) { CheckStories("bfloat16"); }

TEST(CudaBackendTest, PipelinedDecodeWithDeferredTokensMatchesGreedy256) {
  const std::string dir = SharedPath("models/stories260K/hf");
  const std::string ids_path = SharedPath("models/stories260K/greedy256.ids");
  if (dir.empty() || ids_path.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K";
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  const std::vector<int32_t> expected = testing::ReadIdsFile(ids_path);
  for (bool graphs : {true, false}) {
    auto backend = MakeBackend(dir, "float32", graphs, 64, /*timeline=*/true);
    ASSERT_NE(backend, nullptr);
    EXPECT_EQ(testing::PipelinedGreedy(backend.get(), {1}, 256, kBlockSize, 64), expected)
        << "graphs " << graphs;
    // The device timeline saw one Forward and one SampleAsync per step.
    auto t = ReadDeviceTimeline(backend.get(), true);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->num_pieces, 2 * 256);
    EXPECT_GT(t->busy_s, 0.0);
    EXPECT_GE(t->idle_s, 0.0);
    std::printf("[timeline] stories260K pipelined, graphs %d: busy %.3f ms, idle %.3f ms\n",
                graphs, t->busy_s * 1e3, t->idle_s * 1e3);
  }
}

// Two sequences whose logits rows come in the other order than their token rows in the next step:
// each deferred entry names its own sample row.
TEST(CudaBackendTest, DeferredTokensFollowTheirSampleRows) {
  const std::string dir = SharedPath("models/stories260K/hf");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K";
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto backend = MakeBackend(dir, "float32", true, 128);
  ASSERT_NE(backend, nullptr);
  const std::vector<int32_t> pa = {1, 400, 20}, pb = {1, 30, 31, 32, 33};
  // Sequence a owns blocks 0..63, sequence b blocks 64..127 (slot = block * 16 + offset).
  auto two = [&](const std::vector<std::pair<int, std::vector<int32_t>>>& seqs,
                 const std::vector<int>& starts) {
    ForwardBatch b;
    b.cu_seqlens_q.push_back(0);
    b.max_blocks_per_seq = 64;
    bool decode = true;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int base = seqs[i].first * 64;
      const auto& toks = seqs[i].second;
      for (size_t t = 0; t < toks.size(); ++t) {
        const int pos = starts[i] + static_cast<int>(t);
        b.token_ids.push_back(toks[t]);
        b.positions.push_back(pos);
        b.slot_mapping.push_back(int64_t{base} * kBlockSize + pos);
      }
      decode = decode && toks.size() == 1;
      b.cu_seqlens_q.push_back(b.cu_seqlens_q.back() + static_cast<int>(toks.size()));
      b.seq_lens.push_back(starts[i] + static_cast<int>(toks.size()));
      b.logits_indices.push_back(b.cu_seqlens_q.back() - 1);
      for (int j = 0; j < 64; ++j) b.block_tables.push_back(base + j);
    }
    b.is_decode_only = decode;
    return b;
  };
  std::vector<SamplingRow> rows(2);
  std::vector<SampleResult> res;
  // Synchronous reference: a then b, 6 steps, ids read back each step.
  std::vector<int32_t> ref_a, ref_b;
  ASSERT_TRUE(backend->Forward(two({{0, pa}, {1, pb}}, {0, 0})).ok());
  ASSERT_TRUE(backend->Sample(rows, &res).ok());
  int la = 3, lb = 5;
  for (int s = 0; s < 6; ++s) {
    ref_a.push_back(res[0].token_id);
    ref_b.push_back(res[1].token_id);
    const ForwardBatch next = two({{0, {res[0].token_id}}, {1, {res[1].token_id}}}, {la++, lb++});
    ASSERT_TRUE(backend->Forward(next).ok());
    ASSERT_TRUE(backend->Sample(rows, &res).ok());
  }
  // Pipelined, with the sequences alternating order every step.
  std::vector<int32_t> got_a, got_b;
  ASSERT_TRUE(backend->Forward(two({{0, pa}, {1, pb}}, {0, 0})).ok());
  ASSERT_TRUE(backend->SampleAsync(rows).ok());
  bool a_first = true;  // order of the step whose sample is in flight
  la = 3;
  lb = 5;
  for (int s = 0; s < 6; ++s) {
    const bool next_a_first = !a_first;
    ForwardBatch next = next_a_first ? two({{0, {0}}, {1, {0}}}, {la, lb})
                                     : two({{1, {0}}, {0, {0}}}, {lb, la});
    ++la;
    ++lb;
    const int row_a = a_first ? 0 : 1, row_b = a_first ? 1 : 0;
    next.deferred_tokens = next_a_first
                               ? std::vector<DeferredToken>{{0, row_a}, {1, row_b}}
                               : std::vector<DeferredToken>{{0, row_b}, {1, row_a}};
    ASSERT_TRUE(backend->Forward(next).ok());
    ASSERT_TRUE(backend->WaitSample(&res).ok());
    got_a.push_back(res[static_cast<size_t>(row_a)].token_id);
    got_b.push_back(res[static_cast<size_t>(row_b)].token_id);
    ASSERT_TRUE(backend->SampleAsync(rows).ok());
    a_first = next_a_first;
  }
  ASSERT_TRUE(backend->WaitSample(&res).ok());
  EXPECT_EQ(got_a, ref_a);
  EXPECT_EQ(got_b, ref_b);
  // A deferred entry naming a row the last sample did not have is refused.
  ForwardBatch bad = two({{0, {0}}}, {la});
  bad.deferred_tokens.push_back({0, 5});
  EXPECT_EQ(backend->Forward(bad).code(), StatusCode::kInvalidArgument);
}

// Chunked prefill, a two-sequence batch, and graph-replayed decode steps give the logits of one
// eager single-sequence run.
TEST(CudaBackendTest, ChunkedBatchedAndGraphRunsAgree) {
  const std::string dir = SharedPath("models/tiny-qwen2");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/tiny-qwen2";
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto eager = MakeBackend(dir, "float32", /*graphs=*/false);
  auto graphs = MakeBackend(dir, "float32", /*graphs=*/true);
  ASSERT_NE(eager, nullptr);
  ASSERT_NE(graphs, nullptr);
  const int vocab = eager->config().vocab_size;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back((i * 37 + 5) % vocab);
  std::vector<float> full, chunked, batched;
  ASSERT_TRUE(eager->Forward(SingleSequenceBatch(tokens, 0, kBlockSize, 8, false)).ok());
  ASSERT_TRUE(eager->GetLogits(&full).ok());
  std::vector<int32_t> first(tokens.begin(), tokens.begin() + 23), second(tokens.begin() + 23, tokens.end());
  ASSERT_TRUE(eager->Forward(SingleSequenceBatch(first, 0, kBlockSize, 8, false)).ok());
  ASSERT_TRUE(eager->Forward(SingleSequenceBatch(second, 23, kBlockSize, 8, false)).ok());
  ASSERT_TRUE(eager->GetLogits(&chunked).ok());
  EXPECT_LE(RelativeError(chunked, full), 1e-4);
  ASSERT_TRUE(eager->Forward(PrefixAndWholeBatch(tokens, 10, kBlockSize)).ok());
  ASSERT_TRUE(eager->GetLogits(&batched).ok());
  EXPECT_LE(RelativeError(std::vector<float>(batched.begin() + vocab, batched.end()), full), 1e-4);

  // Five sequences decoding together: eager vs graph (the 8-bucket, three padded rows), 5 steps;
  // the graph backend is prefilled identically first.
  constexpr int kSeqs = 5;
  ForwardBatch pre;
  pre.max_blocks_per_seq = 4;
  pre.cu_seqlens_q = {0};
  for (int s = 0; s < kSeqs; ++s) {
    pre.cu_seqlens_q.push_back((s + 1) * 10);
    pre.seq_lens.push_back(10);
    for (int b = 0; b < 4; ++b) pre.block_tables.push_back(s * 4 + b);
    for (int i = 0; i < 10; ++i) {
      pre.token_ids.push_back(tokens[(s * 10 + i) % tokens.size()]);
      pre.positions.push_back(i);
      pre.slot_mapping.push_back(s * 4 * kBlockSize + i);
    }
    pre.logits_indices.push_back(s * 10 + 9);
  }
  ASSERT_TRUE(eager->Forward(pre).ok());
  ASSERT_TRUE(graphs->Forward(pre).ok());
  for (int step = 0; step < 5; ++step) {
    ForwardBatch d;
    d.max_blocks_per_seq = 4;
    d.is_decode_only = true;
    d.block_tables = pre.block_tables;
    d.cu_seqlens_q = {0};
    for (int s = 0; s < kSeqs; ++s) {
      const int pos = 10 + step;
      d.cu_seqlens_q.push_back(s + 1);
      d.token_ids.push_back((s * 11 + step * 7) % vocab);
      d.positions.push_back(pos);
      d.slot_mapping.push_back(s * 4 * kBlockSize + pos);
      d.seq_lens.push_back(pos + 1);
      d.logits_indices.push_back(s);
    }
    std::vector<float> a, g;
    ASSERT_TRUE(eager->Forward(d).ok());
    ASSERT_TRUE(eager->GetLogits(&a).ok());
    ASSERT_TRUE(graphs->Forward(d).ok());
    ASSERT_TRUE(graphs->GetLogits(&g).ok());
    EXPECT_LE(RelativeError(g, a), 1e-4) << "decode step " << step;
  }
}

// The CPU reference backend over the checkpoint in `dir` (float32, 64 KV blocks).
std::unique_ptr<Backend> MakeCpuReference(const std::string& dir,
                                          const std::string& load_format = "") {
  return testing::MakeCpuBackend(dir, kBlockSize, 64, /*num_threads=*/4, load_format);
}

// Runs `b` on the GPU backend and the CPU reference; their logits go to *g and *c. Returns
// max|g - c| / max|c|, or infinity (with a test failure) when a call fails.
double RunOnBoth(Backend* gpu, Backend* cpu, const ForwardBatch& b, std::vector<float>* g,
                 std::vector<float>* c) {
  const bool ok = gpu->Forward(b).ok() && gpu->GetLogits(g).ok() && cpu->Forward(b).ok() &&
                  cpu->GetLogits(c).ok();
  EXPECT_TRUE(ok) << "a Forward or GetLogits call failed";
  return ok ? RelativeError(*g, *c) : INFINITY;
}

// `seqs` sequences decoding together in bf16 through their graph bucket, against the CPU
// reference backend running the same batches, at every step (prefill, then 4 decode steps).
void CheckBatchedBf16Decode(const std::string& dir, const std::string& load_format, int seqs,
                            double tol) {
  SCOPED_TRACE(::testing::Message() << dir << ", " << seqs << " sequences");
  auto gpu = MakeBackend(dir, "bfloat16", /*graphs=*/true, 64, false, load_format);
  ASSERT_NE(gpu, nullptr);
  auto cpu = MakeCpuReference(dir, load_format);
  ASSERT_NE(cpu, nullptr);
  const int vocab = gpu->config().vocab_size;
  ForwardBatch b;  // prefill: sequence s has 10 + s tokens in blocks 4s .. 4s + 3
  b.max_blocks_per_seq = 4;
  b.cu_seqlens_q = {0};
  std::vector<int> lens;
  for (int s = 0; s < seqs; ++s) {
    lens.push_back(10 + s);
    for (int i = 0; i < lens[s]; ++i) {
      b.token_ids.push_back((s * 97 + i * 131 + 7) % vocab);
      b.positions.push_back(i);
      b.slot_mapping.push_back(s * 4 * kBlockSize + i);
    }
    b.cu_seqlens_q.push_back(static_cast<int32_t>(b.token_ids.size()));
    b.seq_lens.push_back(lens[s]);
    b.logits_indices.push_back(static_cast<int32_t>(b.token_ids.size()) - 1);
    for (int k = 0; k < 4; ++k) b.block_tables.push_back(s * 4 + k);
  }
  for (int step = 0; step < 5; ++step) {
    std::vector<float> g, c;
    const double err = RunOnBoth(gpu.get(), cpu.get(), b, &g, &c);
    ASSERT_LE(err, tol) << "step " << step;
    std::printf("[decode] %s bfloat16 %d sequences step %d: max|d|/max|ref| = %.3g\n",
                dir.c_str(), seqs, step, err);
    ForwardBatch d;  // next decode step: each sequence's CPU argmax at its next position
    d.max_blocks_per_seq = 4;
    d.is_decode_only = true;
    d.block_tables = b.block_tables;
    d.cu_seqlens_q = {0};
    for (int s = 0; s < seqs; ++s) {
      const int pos = lens[s]++;
      d.token_ids.push_back(Argmax(c.data() + static_cast<size_t>(s) * vocab, vocab));
      d.positions.push_back(pos);
      d.slot_mapping.push_back(s * 4 * kBlockSize + pos);
      d.seq_lens.push_back(pos + 1);
      d.cu_seqlens_q.push_back(s + 1);
      d.logits_indices.push_back(s);
    }
    b = std::move(d);
  }
}

// Two and three sequences: every projection takes the split-row GEMV at 2 and 3 rows
// (Gemm::kDefaultGemvMaxRows). tiny-qwen3 has q/k norms, so RoPE runs as its own kernel.
TEST(CudaBackendTest, Bf16DecodeOfTwoAndThreeSequencesMatchesCpu) {
  const std::string dir = SharedPath("models/tiny-qwen3");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/tiny-qwen3";
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  for (int seqs : {2, 3}) CheckBatchedBf16Decode(dir, "", seqs, 3e-2);
}

// A Qwen2 with head_dim 64, qkv bias and no q/k norms (the repository's dummy-weight
// qwen2.5-tiny-dummy, same seeded weights on both backends): decode steps of 2 – 5 rows rotate q
// and write their K/V inside the decode attention kernel (PagedAttentionFusedRope). The bound is
// the bf16 one; a wrong stride, slot or rotation in the wiring gives errors of order 1.
TEST(CudaBackendTest, FusedRopeDecodeOnDummyQwen2MatchesCpu) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  const char* src = std::getenv("KILN_SOURCE_DIR");
  const std::string dir = std::string(src != nullptr ? src : ".") + "/models/qwen2.5-tiny-dummy";
  if (!FileExists(dir + "/config.json")) GTEST_SKIP() << "missing " << dir;
  for (int seqs : {2, 5}) CheckBatchedBf16Decode(dir, "dummy", seqs, 5e-2);
}

// Long contexts (KV split across blocks of the decode kernels, eager and graph-replayed) against
// the CPU reference backend: prefill `prompt_len` tokens, then decode steps, logits compared at
// every step. Regression test for decode steps whose context crosses a 64-key tile.
void CheckDecodeAgainstCpu(const std::string& name, const std::string& dtype, int prompt_len,
                           bool graphs) {
  const std::string dir = SharedPath("models/" + name);
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/" << name;
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto gpu = MakeBackend(dir, dtype, graphs);
  ASSERT_NE(gpu, nullptr);
  auto cpu = MakeCpuReference(dir);
  ASSERT_NE(cpu, nullptr);
  const int vocab = gpu->config().vocab_size;
  std::vector<int32_t> prompt;
  for (int i = 0; i < prompt_len; ++i) prompt.push_back((i * 131 + 7) % vocab);
  const double tol = ToleranceFor(dtype, name).logits;
  ForwardBatch b = SingleSequenceBatch(prompt, 0, kBlockSize, 64, false);
  for (int step = 0; step < 6; ++step) {
    std::vector<float> g, c;
    const double err = RunOnBoth(gpu.get(), cpu.get(), b, &g, &c);
    if (std::isinf(err)) return;
    EXPECT_LE(err, tol) << name << " " << dtype << " graphs " << graphs << " context "
                        << prompt_len + step;
    if (step == 0 || err > tol) {
      std::printf("[decode] %s %s graphs=%d context %d: max|d|/max|ref| = %.3g\n", name.c_str(),
                  dtype.c_str(), graphs, prompt_len + step, err);
    }
    b = SingleSequenceBatch({Argmax(c.data(), vocab)}, prompt_len + step, kBlockSize, 64, false);
  }
}

TEST(CudaBackendTest, Qwen3DecodeAcrossTileBoundaryGraphs) {
  CheckDecodeAgainstCpu("tiny-qwen3", "float32", 62, true);
}
TEST(CudaBackendTest, Qwen3DecodeAcrossTileBoundaryEager) {
  CheckDecodeAgainstCpu("tiny-qwen3", "float32", 62, false);
}
TEST(CudaBackendTest, Qwen3DecodeLongContextSplitKv) {
  CheckDecodeAgainstCpu("tiny-qwen3", "float32", 700, true);
  CheckDecodeAgainstCpu("tiny-qwen3", "float32", 700, false);
}
TEST(CudaBackendTest, Qwen2DecodeLongContextSplitKv) {
  CheckDecodeAgainstCpu("tiny-qwen2", "float32", 700, true);
  CheckDecodeAgainstCpu("tiny-qwen2", "bfloat16", 700, true);
}

TEST(CudaBackendTest, KvCacheSizedFromMemoryUtilization) {
  const std::string dir = SharedPath("models/tiny-qwen2");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/tiny-qwen2";
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  ModelOptions options;
  options.model_path = dir;
  auto model = LoadModel(options);
  ASSERT_TRUE(model.ok());
  CudaBackendOptions o;
  o.gpu_memory_utilization = 0.2;
  o.max_num_batched_tokens = 1024;
  auto backend = CreateCudaBackend(*model, o);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  size_t free_bytes = 0, total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  const ModelConfig& c = (*backend)->config();
  const double kv_bytes = static_cast<double>((*backend)->num_kv_blocks()) * 2 *
                          c.num_hidden_layers * o.block_size * c.kv_size() * 2;
  // Most of the 20% budget goes to KV (a tiny model's weights are negligible), none past it.
  EXPECT_GT(kv_bytes, 0.1 * total_bytes);
  EXPECT_LT(kv_bytes, 0.2 * total_bytes);
  o.gpu_memory_utilization = 1e-6;
  EXPECT_EQ(CreateCudaBackend(*model, o).status().code(), StatusCode::kResourceExhausted);
}

TEST(CudaBackendTest, RejectsMalformedBatch) {
  const std::string dir = SharedPath("models/stories260K/hf");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K/hf";
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto backend = MakeBackend(dir, "bfloat16", true, 4);
  ASSERT_NE(backend, nullptr);
  ForwardBatch good = SingleSequenceBatch({1, 2, 3}, 0, kBlockSize, 4, true);
  EXPECT_TRUE(backend->Forward(good).ok());
  ForwardBatch b = good;
  b.token_ids[1] = 100000;
  EXPECT_FALSE(backend->Forward(b).ok());
  b = good;
  b.block_tables[0] = 4;  // outside the 4-block cache
  EXPECT_FALSE(backend->Forward(b).ok());
  b = good;
  b.slot_mapping[0] = 64;
  EXPECT_FALSE(backend->Forward(b).ok());
  b = good;
  b.cu_seqlens_q = {0, 2};
  EXPECT_FALSE(backend->Forward(b).ok());
  std::vector<float> logits;
  EXPECT_FALSE(backend->GetLogits(&logits).ok());  // the last Forward failed
}

}  // namespace
}  // namespace kiln
