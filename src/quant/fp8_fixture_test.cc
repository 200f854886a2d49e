// kiln against FP8 fixtures written by PyTorch (scripts/make_fp8_fixtures.py, committed under
// tests/data/fp8/): the E4M3 conversion table of torch.float8_e4m3fn, and three checkpoints
// (block-FP8 tinystories-656k, compressed-tensors stories260K per-tensor + static input scale and
// per-channel + dynamic activations). For each checkpoint: it loads; every projection's
// dequantized weights hash (FNV-1a 64 over float32 bytes) to what PyTorch computed; kiln's
// quantizer, fed the same dense weights, writes the same E4M3 bytes and scales as PyTorch; and the
// CPU backend's logits match PyTorch's float32 emulation of the checkpoint's W8A8 math
// (transformers' Llama with dequantized weights and fake-quantized projection inputs) and, where
// present, transformers' own FP8 run of the checkpoint.
//
// Logits against PyTorch's float32 emulation. E4M3 rounding is discontinuous: an activation
// within a float32 ulp of a rounding midpoint goes one way or the other depending on the order in
// which the GEMM before it (or the attention before o_proj) summed, and a flipped code moves that
// input by up to 1/8 of its value. In these 64- and 128-wide models one flip is enough to move the
// logits at that position and every later one by a few percent of max|logit|. Measured (session 5):
// with kiln's own batch-independent linear kernel the three fixtures sit 0.025 / 0.036 / 0.028 ×
// max|ref| from the emulation, with every position before the first flip exact to < 5e-7; routing
// kiln's linear layers through OpenBLAS sgemm one token at a time (the summation order PyTorch's
// CPU kernels happened to use) brings the two compressed-tensors fixtures to 4.8e-7 and 3.5e-7
// over all 32 positions. So the math is identical and the gap is summation order, amplified.
// The assertions therefore are:
//  - position 0 (BOS: attention is a copy of v, nothing orders a softmax) matches to 1e-5 × max|ref|
//    through every layer and all seven quantized projections; a wrong scale, block layout or
//    activation scheme moves it by 1e-2 or more (measured: 0.013 – 0.024 with activations left
//    unquantized);
//  - the whole sequence within 0.06 × max|ref| (the flip amplification measured above, with room),
//    and closer to the emulation than the dense model by more than 2×.
//  - transformers' GPU FP8 kernels, where the fixture has them, 2e-2 (float32 activations) or 5e-2
//    (bfloat16 activations): different GEMM accumulation on tensor cores plus, in bfloat16, 8-bit
//    mantissas on every activation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "backend/backend_test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "model/llama_projections.h"
#include "model/mapped_file.h"
#include "model/quantized_weights.h"
#include "model/safetensors.h"
#include "model/test_data.h"
#include "quant/accuracy.h"
#include "quant/fp8_quant.h"

namespace kiln::quant {
namespace {

std::string FixtureDir() {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  const std::string dir = std::string(src != nullptr ? src : ".") + "/tests/data/fp8";
  return FileExists(dir) ? dir : "";
}

#define SKIP_WITHOUT_FIXTURES(dir)                                       \
  if ((dir).empty())                                                     \
  GTEST_SKIP() << "no tests/data/fp8 (write it on the GPU machine with " \
                  "scripts/make_fp8_fixtures.py --shared ../shared --out tests/data/fp8)"

uint64_t Fnv1a64(const std::vector<float>& values) {
  uint64_t h = 0xCBF29CE484222325ull;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  for (size_t i = 0; i < values.size() * sizeof(float); ++i) h = (h ^ bytes[i]) * 0x100000001B3ull;
  return h;
}

TEST(Fp8FixtureTest, E4M3ConversionMatchesTorch) {
  const std::string dir = FixtureDir();
  SKIP_WITHOUT_FIXTURES(dir);
  auto file = SafetensorsFile::Open(dir + "/e4m3_cases.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto x = ReadSafetensorsFloat(**file, "x");
  auto torch = (*file)->GetRaw("torch");
  auto torch_sat = (*file)->GetRaw("torch_sat");
  ASSERT_TRUE(x.ok() && torch.ok() && torch_sat.ok());
  ASSERT_EQ(torch->first->end - torch->first->begin, x->size());
  ASSERT_GT(x->size(), 5000u);
  for (size_t i = 0; i < x->size(); ++i) {
    ASSERT_EQ(Fp8E4M3FromFloat((*x)[i]), torch->second[i]) << "x = " << (*x)[i];
    ASSERT_EQ(Fp8E4M3FromFloatSat((*x)[i]), torch_sat->second[i]) << "x = " << (*x)[i];
  }
}

struct Fixture {
  const char* name;          // directory under tests/data/fp8
  const char* dense_source;  // the dense checkpoint it was made from, under ../shared
  WeightQuantization quant;
  bool static_input = false;
};

class Fp8CheckpointFixtureTest : public ::testing::TestWithParam<Fixture> {};

TEST_P(Fp8CheckpointFixtureTest, LoadsAndMatchesPyTorch) {
  const Fixture& fx = GetParam();
  const std::string root = FixtureDir();
  SKIP_WITHOUT_FIXTURES(root);
  const std::string dir = root + "/" + fx.name;
  const std::string dense_dir = testing::SharedPath(fx.dense_source);
  if (dense_dir.empty()) GTEST_SKIP() << "missing ../shared/" << fx.dense_source;
  ModelOptions options;
  options.model_path = dir;
  auto model = LoadModel(options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const LlamaWeights& w = (*model)->weights;
  EXPECT_EQ(w.quantization, fx.quant);
  options.model_path = dense_dir;
  auto dense = LoadModel(options);
  ASSERT_TRUE(dense.ok()) << dense.status().ToString();

  // Dequantized weights: PyTorch's hashes. Quantized bytes and scales: kiln's quantizer on the
  // same dense weights gives PyTorch's.
  auto expected_text = ReadFileToString(dir + "/expected.json");
  ASSERT_TRUE(expected_text.ok());
  const nlohmann::json expected = nlohmann::json::parse(*expected_text);
  int checked = 0;
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const auto got = LayerProjections(w.layers[i]);
    const auto src = LayerProjections((*dense)->weights.layers[i]);
    for (size_t p = 0; p < got.size(); ++p) {
      const std::string name =
          "model.layers." + std::to_string(i) + "." + got[p].module + ".weight";
      const LinearWeight lw =
          ProjectionLinearWeight(w.quantization, *got[p].weight, *got[p].scales, name);
      ASSERT_TRUE(lw.Validate().ok()) << name;
      std::vector<float> deq(static_cast<size_t>(lw.out_features * lw.in_features));
      lw.DequantizeRows(0, lw.out_features, deq.data());
      char hex[17];
      std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(Fnv1a64(deq)));
      EXPECT_EQ(std::string(hex), expected["dequant_fnv1a64"][name].get<std::string>()) << name;
      auto mine = QuantizeWeightFp8(*src[p].weight, fx.quant);
      ASSERT_TRUE(mine.ok()) << name;
      EXPECT_EQ(0, std::memcmp(mine->weight.data, got[p].weight->data, got[p].weight->size_bytes))
          << name;
      EXPECT_EQ(mine->scale.ToFloatVector(), got[p].scales->weight.ToFloatVector()) << name;
      EXPECT_EQ(got[p].scales->input.defined(), fx.static_input) << name;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 7 * static_cast<int>(w.layers.size()));

  // Logits on the CPU backend against PyTorch's.
  auto ref = SafetensorsFile::Open(dir + "/expected.safetensors");
  ASSERT_TRUE(ref.ok());
  auto ids = ReadSafetensorsInt32(**ref, "input_ids");
  auto emulated = ReadSafetensorsFloat(**ref, "emulated_logits");
  ASSERT_TRUE(ids.ok() && emulated.ok());
  CpuBackendOptions cpu;
  cpu.num_kv_blocks = 8;
  cpu.num_threads = 2;
  auto backend = CreateCpuBackend(*model, cpu);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  auto logits = TeacherForcedLogits(**backend, *ids);
  ASSERT_TRUE(logits.ok()) << logits.status().ToString();
  // See the header comment: position 0 exactly, the sequence within the flip amplification.
  const size_t vocab = emulated->size() / ids->size();
  ASSERT_EQ(logits->size(), emulated->size());
  const std::vector<float> first(logits->begin(), logits->begin() + vocab);
  const std::vector<float> first_ref(emulated->begin(), emulated->begin() + vocab);
  EXPECT_LE(testing::RelativeError(first, first_ref), 1e-5) << fx.name << ": position 0";
  const double whole = testing::RelativeError(*logits, *emulated);
  std::printf("[fixture] %s: kiln FP8 logits vs PyTorch emulation max|d|/max|ref| = %.4g "
              "(position 0: %.3g)\n",
              fx.name, whole, testing::RelativeError(first, first_ref));
  EXPECT_LE(whole, 0.06) << fx.name;
  // FP8 is really in effect: the dense model is further away.
  auto dense_backend = CreateCpuBackend(*dense, cpu);
  ASSERT_TRUE(dense_backend.ok());
  auto dense_logits = TeacherForcedLogits(**dense_backend, *ids);
  ASSERT_TRUE(dense_logits.ok());
  EXPECT_GT(testing::RelativeError(*dense_logits, *emulated),
            2 * testing::RelativeError(*logits, *emulated));
  if ((*ref)->Has("hf_logits")) {
    auto hf = ReadSafetensorsFloat(**ref, "hf_logits");
    ASSERT_TRUE(hf.ok());
    const bool bf16 =
        expected.value("hf_logits_dtype", std::string()).find("bfloat16") != std::string::npos;
    EXPECT_LE(testing::RelativeError(*logits, *hf), bf16 ? 5e-2 : 2e-2) << fx.name;
  } else {
    std::cout << "[ NOTE ] " << fx.name << ": no transformers FP8 logits in the fixture ("
              << expected.value("hf_error", std::string("?")) << ")\n";
  }
}

INSTANTIATE_TEST_SUITE_P(
    PyTorchWritten, Fp8CheckpointFixtureTest,
    ::testing::Values(Fixture{"tinystories-block", "models/tinystories-656k",
                              Fp8Quantization(ScaleGranularity::kPerBlock), false},
                      Fixture{"stories260k-ct-tensor", "models/stories260K/hf",
                              Fp8Quantization(ScaleGranularity::kPerTensor), true},
                      Fixture{"stories260k-ct-channel", "models/stories260K/hf",
                              Fp8Quantization(ScaleGranularity::kPerChannel), false}),
    [](const ::testing::TestParamInfo<Fixture>& info) {
      std::string n = info.param.name;
      for (char& c : n)
        if (c == '-') c = '_';
      return n;
    });

}  // namespace
}  // namespace kiln::quant
