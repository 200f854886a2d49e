// The accuracy metrics (quant/accuracy.h) on hand-computed distributions, the teacher-forced
// runner against tinystories-656k's HF reference logits, and FP8 weight rounding's accuracy on
// tinystories-656k over its reference sequences.
#include "quant/accuracy.h"

#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend_test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "model/quantized_weights.h"
#include "model/test_data.h"
#include "quant/fp8_quant.h"

namespace kiln::quant {
namespace {

TEST(AccuracyTest, IdenticalLogits) {
  const std::vector<float> logits = {1.0f, 2.0f, -1.0f, 0.5f, 0.5f, 3.0f};
  const std::vector<int32_t> next = {2, 0};
  AccuracyStats s;
  AccumulateAccuracy(logits.data(), logits.data(), 2, 3, next, &s);
  EXPECT_EQ(s.tokens, 2);
  EXPECT_EQ(s.MeanKl(), 0.0);
  EXPECT_EQ(s.Top1Agreement(), 1.0);
  EXPECT_EQ(s.nll_tokens, 2);
  EXPECT_DOUBLE_EQ(s.Perplexity(), s.ReferencePerplexity());
  // -log softmax([1, 2, -1])[2] and -log softmax([0.5, 0.5, 3])[0], averaged.
  const double nll0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(-1.0)) + 1.0;
  const double nll1 = std::log(2 * std::exp(0.5) + std::exp(3.0)) - 0.5;
  EXPECT_NEAR(s.Perplexity(), std::exp((nll0 + nll1) / 2), 1e-12);
}

// P_ref = (1/2, 1/2), P = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3); next token 0:
// perplexity 4/3 under P and 2 under P_ref. Ties pick the lowest id, so the argmaxes agree.
// A second row with a different argmax and a constant shift (which changes nothing).
TEST(AccuracyTest, HandComputedKlPerplexityAndTop1) {
  const float ln3 = std::log(3.0f);
  const std::vector<float> ref = {0.0f, 0.0f, 10.0f, 10.0f + std::log(3.0f)};
  const std::vector<float> test = {ln3, 0.0f, 7.0f + std::log(3.0f), 7.0f};
  AccuracyStats s;
  AccumulateAccuracy(ref.data(), test.data(), 1, 2, std::vector<int32_t>{0}, &s);
  EXPECT_NEAR(s.MeanKl(), 0.5 * std::log(4.0 / 3.0), 1e-7);
  EXPECT_NEAR(s.Perplexity(), 4.0 / 3.0, 1e-6);
  EXPECT_NEAR(s.ReferencePerplexity(), 2.0, 1e-12);
  EXPECT_EQ(s.Top1Agreement(), 1.0);
  AccuracyStats second;
  // Row 2: P_ref = (1/4, 3/4), P = (3/4, 1/4): KL = 1/4 ln(1/3) + 3/4 ln 3 = 1/2 ln 3; no next.
  AccumulateAccuracy(ref.data() + 2, test.data() + 2, 1, 2, {}, &second);
  EXPECT_NEAR(second.MeanKl(), 0.5 * std::log(3.0), 1e-6);
  EXPECT_EQ(second.Top1Agreement(), 0.0);
  EXPECT_EQ(second.nll_tokens, 0);
  s.Merge(second);
  EXPECT_EQ(s.tokens, 2);
  EXPECT_NEAR(s.MeanKl(), 0.25 * (std::log(4.0 / 3.0) + std::log(3.0)), 1e-6);
  EXPECT_NEAR(s.kl_max, 0.5 * std::log(3.0), 1e-6);
  EXPECT_EQ(s.Top1Agreement(), 0.5);
  // Row 1 is a tie (margin 0); row 2's reference leads by ln 3 > kConfidentMargin and flips.
  EXPECT_EQ(s.confident_tokens, 1);
  EXPECT_EQ(s.ConfidentTop1Agreement(), 0.0);
  EXPECT_NEAR(s.Perplexity(), 4.0 / 3.0, 1e-6);  // only row 1 has a next token
}

std::unique_ptr<Backend> CpuBackendFor(std::shared_ptr<const LoadedModel> model) {
  CpuBackendOptions options;
  options.num_kv_blocks = 16;
  options.num_threads = 2;
  auto backend = CreateCpuBackend(std::move(model), options);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  return backend.ok() ? std::move(backend).value() : nullptr;
}

std::vector<std::vector<int32_t>> ReferenceSequences(const std::string& dir) {
  std::vector<std::vector<int32_t>> seqs;
  for (const testing::ReferencePrompt& p : testing::LoadReferencePrompts(dir))
    seqs.push_back(p.AllIds());
  return seqs;
}

// Chunked teacher forcing (chunks of 7 tokens) reproduces HF's logits; a model against itself has
// zero KL and full agreement; a sequence longer than the KV cache is refused.
TEST(AccuracyTest, TeacherForcedRunnerMatchesReference) {
  const std::string dir = testing::SharedPath("models/tinystories-656k");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/tinystories-656k";
  auto model = testing::LoadModelOrFail(dir);
  ASSERT_NE(model, nullptr);
  auto a = CpuBackendFor(model), b = CpuBackendFor(model);
  ASSERT_TRUE(a && b);
  const auto prompts = testing::LoadReferencePrompts(dir);
  ASSERT_FALSE(prompts.empty());
  auto logits = TeacherForcedLogits(*a, prompts[1].AllIds(), /*chunk_tokens=*/7);
  ASSERT_TRUE(logits.ok()) << logits.status().ToString();
  EXPECT_LE(testing::RelativeError(*logits, prompts[1].logits), 1e-4);
  auto same = CompareOnSequences(*a, *b, ReferenceSequences(dir));
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  EXPECT_GT(same->tokens, 100);
  EXPECT_LE(same->MeanKl(), 1e-9);
  EXPECT_EQ(same->Top1Agreement(), 1.0);
  EXPECT_GT(same->Perplexity(), 1.0);
  EXPECT_NEAR(same->Perplexity(), same->ReferencePerplexity(), 1e-9);
  EXPECT_EQ(TeacherForcedLogits(*a, std::vector<int32_t>(16 * 16 + 1, 5)).status().code(),
            StatusCode::kInvalidArgument);
}

// FP8 E4M3 weights (each granularity, dequantized in memory: weight rounding alone) against the
// float32 model over tinystories-656k's reference sequences (375 teacher-forced positions).
// Measured (per-tensor / per-channel / block 128x128): mean KL 0.0038 / 0.0040 / 0.0038 nats,
// top-1 93.9% / 95.2% / 95.7%, perplexity 5.667 / 5.662 / 5.653 vs 5.639; every flipped position
// had a reference margin below 0.23 (bf16-rounded weights flip none). This 656K-parameter model
// has many near-ties, so 97% top-1 over all positions is out of reach for FP8 weights on it; the
// bounds below hold with room and still catch a wrong scale or layout (which costs far more).
TEST(AccuracyTest, Fp8WeightRoundingKeepsTop1OnTinyStories) {
  const std::string dir = testing::SharedPath("models/tinystories-656k");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/tinystories-656k";
  auto dense = testing::LoadModelOrFail(dir);
  ASSERT_NE(dense, nullptr);
  auto reference = CpuBackendFor(dense);
  ASSERT_NE(reference, nullptr);
  for (ScaleGranularity g :
       {ScaleGranularity::kPerTensor, ScaleGranularity::kPerChannel, ScaleGranularity::kPerBlock}) {
    const WeightQuantization q = Fp8Quantization(g);
    auto rounded = std::make_shared<LoadedModel>(*dense);
    auto quantized = QuantizeLlamaWeightsFp8(dense->weights, q);
    ASSERT_TRUE(quantized.ok());
    rounded->weights = *quantized;
    ASSERT_TRUE(DequantizeProjections(&rounded->weights).ok());
    auto test = CpuBackendFor(rounded);
    ASSERT_NE(test, nullptr);
    auto stats = CompareOnSequences(*reference, *test, ReferenceSequences(dir));
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    std::cout << "[ FIGURE ] tinystories-656k fp8 weights (" << q.Describe()
              << ", dequantized): mean KL " << stats->MeanKl() << ", top-1 "
              << 100 * stats->Top1Agreement()
              << "% (confident positions: " << 100 * stats->ConfidentTop1Agreement() << "% of "
              << stats->confident_tokens << "), ppl " << stats->Perplexity() << " vs "
              << stats->ReferencePerplexity() << "\n";
    EXPECT_GT(stats->MeanKl(), 0.0);
    EXPECT_LE(stats->MeanKl(), 0.01) << q.Describe();
    EXPECT_GE(stats->Top1Agreement(), 0.93) << q.Describe();
    EXPECT_GT(stats->confident_tokens, 200);
    EXPECT_EQ(stats->ConfidentTop1Agreement(), 1.0) << q.Describe();
    EXPECT_LE(stats->Perplexity(), stats->ReferencePerplexity() * 1.02) << q.Describe();
  }
}

// The CPU backend's FP8 path end to end (CpuBackendOptions quantization "fp8": E4M3 projections,
// FP8-quantized activations; kv_cache_dtype "fp8": K/V through E4M3) against the float32 model over
// tinystories-656k's reference sequences (375 positions). Measured: W8A8 per-channel mean KL
// 0.0080, top-1 92.8%, confident positions 100% of 250, ppl 5.709 vs 5.639; per-tensor 0.0076,
// 92.5%, 99.6%, 5.714; per-channel + FP8 KV 0.0126, 92.8%, 99.6%, 5.786. The 97% top-1 is
// out of reach on this model (FP8 weight rounding alone gives 95.2%, see above); these bounds
// hold with room and fail if FP8 is not applied (KL 0) or applied wrongly (KL, ppl far larger).
void CheckFp8Backend(const std::string& scale, const std::string& kv, double min_top1) {
  const std::string dir = testing::SharedPath("models/tinystories-656k");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/tinystories-656k";
  auto dense = testing::LoadModelOrFail(dir);
  ASSERT_NE(dense, nullptr);
  auto reference = CpuBackendFor(dense);
  CpuBackendOptions options;
  options.num_kv_blocks = 16;
  options.num_threads = 2;
  options.quantization = "fp8";
  options.quantization_scale = scale;
  options.kv_cache_dtype = kv;
  auto test = CreateCpuBackend(dense, options);
  ASSERT_TRUE(test.ok()) << test.status().ToString();
  auto stats = CompareOnSequences(*reference, **test, ReferenceSequences(dir));
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  std::cout << "[ FIGURE ] tinystories-656k W8A8 fp8 " << scale << ", kv " << kv << ": mean KL "
            << stats->MeanKl() << ", top-1 " << 100 * stats->Top1Agreement()
            << "% (confident positions: " << 100 * stats->ConfidentTop1Agreement() << "% of "
            << stats->confident_tokens << "), ppl " << stats->Perplexity() << " vs "
            << stats->ReferencePerplexity() << "\n";
  EXPECT_GT(stats->MeanKl(), 0.0);
  EXPECT_LE(stats->MeanKl(), 0.02);
  EXPECT_GE(stats->Top1Agreement(), min_top1);
  EXPECT_GE(stats->ConfidentTop1Agreement(), 0.99);
  EXPECT_LE(stats->Perplexity(), stats->ReferencePerplexity() * 1.04);
}

TEST(AccuracyTest, Fp8W8A8PerChannel) { CheckFp8Backend("per-channel", "auto", 0.9); }
TEST(AccuracyTest, Fp8W8A8PerTensor) { CheckFp8Backend("per-tensor", "auto", 0.9); }
TEST(AccuracyTest, Fp8W8A8AndFp8Kv) { CheckFp8Backend("per-channel", "fp8", 0.9); }

}  // namespace
}  // namespace kiln::quant
