// quantization_config parsing (model/quantization_config.h) and the safetensors writer
// (model/safetensors_writer.h) read back by the reader.
#include "model/quantization_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "model/owned_tensor.h"
#include "model/safetensors.h"
#include "model/safetensors_writer.h"

namespace kiln {
namespace {

StatusOr<CheckpointQuantization> Parse(const std::string& qc) {
  return ParseQuantizationConfig(R"({"hidden_size": 8, "quantization_config": )" + qc + "}");
}

TEST(QuantizationConfigTest, DenseWithoutConfig) {
  auto q = ParseQuantizationConfig(R"({"hidden_size": 8})");
  ASSERT_TRUE(q.ok());
  EXPECT_FALSE(q->quantized());
  q = Parse("null");
  ASSERT_TRUE(q.ok());
  EXPECT_FALSE(q->quantized());
}

TEST(QuantizationConfigTest, BlockFp8) {
  auto q = Parse(R"({"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                     "weight_block_size": [128, 128]})");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->method, "fp8");
  EXPECT_EQ(q->weights.format, WeightFormat::kFp8E4M3);
  EXPECT_EQ(q->weights.granularity, ScaleGranularity::kPerBlock);
  EXPECT_EQ(q->weights.block_out, 128);
  EXPECT_EQ(q->weights.block_in, 128);
  EXPECT_EQ(q->weight_scale_name, "weight_scale_inv");
  EXPECT_FALSE(q->static_input_scale);
}

TEST(QuantizationConfigTest, PerTensorFp8Static) {
  auto q = Parse(R"({"quant_method": "fp8", "activation_scheme": "static"})");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->weights.granularity, ScaleGranularity::kPerTensor);
  EXPECT_EQ(q->weight_scale_name, "weight_scale");
  EXPECT_TRUE(q->static_input_scale);
}

std::string CompressedTensors(const std::string& weights, const std::string& acts) {
  return R"({"quant_method": "compressed-tensors", "format": "float-quantized",
             "config_groups": {"group_0": {"targets": ["Linear"], "weights": )" +
         weights + R"(, "input_activations": )" + acts + R"(}}, "ignore": ["lm_head"]})";
}

TEST(QuantizationConfigTest, CompressedTensorsSchemes) {
  const std::string w = R"({"num_bits": 8, "type": "float", "symmetric": true, "strategy": ")";
  const std::string static_act =
      R"({"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": false})";
  const std::string token_act =
      R"({"num_bits": 8, "type": "float", "strategy": "token", "dynamic": true})";
  auto q = Parse(CompressedTensors(w + R"(tensor"})", static_act));
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->weights.granularity, ScaleGranularity::kPerTensor);
  EXPECT_EQ(q->weight_scale_name, "weight_scale");
  EXPECT_TRUE(q->static_input_scale);
  q = Parse(CompressedTensors(w + R"(channel"})", token_act));
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->weights.granularity, ScaleGranularity::kPerChannel);
  EXPECT_FALSE(q->static_input_scale);
  q = Parse(CompressedTensors(w + R"(block", "block_structure": [128, 64]})", "null"));
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->weights.granularity, ScaleGranularity::kPerBlock);
  EXPECT_EQ(q->weights.block_in, 64);
  // Unsupported: block weights with static activations, int8, 4-bit, per-group strategy.
  EXPECT_EQ(Parse(CompressedTensors(w + R"(block", "block_structure": [128, 128]})", static_act))
                .status()
                .code(),
            StatusCode::kUnimplemented);
  EXPECT_EQ(
      Parse(CompressedTensors(R"({"num_bits": 8, "type": "int", "strategy": "channel"})", "null"))
          .status()
          .code(),
      StatusCode::kUnimplemented);
  EXPECT_EQ(Parse(CompressedTensors(w + R"(group", "group_size": 128})", "null")).status().code(),
            StatusCode::kUnimplemented);
}

TEST(QuantizationConfigTest, ErrorsNameTheField) {
  auto awq = Parse(R"({"quant_method": "awq", "bits": 4})");
  EXPECT_EQ(awq.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(awq.status().message().find("quant_method 'awq'"), std::string::npos);
  auto e5m2 = Parse(R"({"quant_method": "fp8", "fmt": "e5m2"})");
  EXPECT_EQ(e5m2.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(e5m2.status().message().find("fmt"), std::string::npos);
  EXPECT_EQ(Parse(R"({"quant_method": "fp8", "weight_block_size": [128]})").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse(R"({"quant_method": "fp8", "weight_block_size": [128, 128],
                      "activation_scheme": "static"})")
                .status()
                .code(),
            StatusCode::kUnimplemented);
  EXPECT_EQ(Parse(R"({"fmt": "e4m3"})").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse(R"("fp8")").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse(R"({"quant_method": "compressed-tensors", "config_groups": {}})").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse(R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
                      "config_groups": {"g": {}}})")
                .status()
                .code(),
            StatusCode::kUnimplemented);
}

// Null means absent (the default); any other wrong type is an error naming the field, never an
// exception out of the JSON library.
TEST(QuantizationConfigTest, NullIsAbsentAndWrongTypesAreErrors) {
  auto q = Parse(R"({"quant_method": "fp8", "fmt": null, "activation_scheme": null,
                     "weight_block_size": [128, 128]})");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_FALSE(q->static_input_scale);
  const std::string w = R"({"num_bits": 8, "type": "float", "symmetric": null, "strategy": null,
                            "dynamic": null})";
  q = Parse(CompressedTensors(w, R"({"num_bits": 8, "type": "float", "dynamic": null,
                                     "strategy": null})"));
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->weights.granularity, ScaleGranularity::kPerTensor);
  EXPECT_TRUE(q->static_input_scale);
  const std::pair<const char*, const char*> bad[] = {
      {R"({"quant_method": "fp8", "fmt": 3})", "fmt"},
      {R"({"quant_method": "fp8", "activation_scheme": ["dynamic"]})", "activation_scheme"},
      {R"({"quant_method": "compressed-tensors", "format": {}, "config_groups": {"g": {}}})",
       "format"},
  };
  for (const auto& [config, field] : bad) {
    auto r = Parse(config);
    ASSERT_FALSE(r.ok()) << config;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << config;
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().ToString();
  }
  for (const char* weights :
       {R"({"num_bits": 8, "type": "float", "symmetric": "yes"})",
        R"({"num_bits": 8, "type": "float", "strategy": 7})",
        R"({"num_bits": 8, "type": "float", "dynamic": "false"})",
        R"({"num_bits": "8", "type": "float"})", R"({"num_bits": 8, "type": 1})"}) {
    auto r = Parse(CompressedTensors(weights, "null"));
    ASSERT_FALSE(r.ok()) << weights;
    EXPECT_NE(r.status().message().find("weights"), std::string::npos) << r.status().ToString();
  }
  auto r = Parse(CompressedTensors(R"({"num_bits": 8, "type": "float"})",
                                   R"({"num_bits": 8, "type": "float", "dynamic": 1})"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("input_activations.dynamic"), std::string::npos)
      << r.status().ToString();
}

TEST(SafetensorsWriterTest, RoundTripsEveryDtype) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("kiln_st_writer_" + std::to_string(getpid()) + ".safetensors"))
                               .string();
  const std::vector<float> f = {1.5f, -2.0f, 3.25f};
  const std::vector<uint16_t> bf = {0x3F80, 0xC000};
  const std::vector<uint8_t> f8 = {0x7E, 0x01, 0x80, 0x38};
  const std::vector<int8_t> i8 = {-128, 5, 127};
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"odd", OwnedTensor(DType::kF8E4M3, {1}, std::vector<uint8_t>{0x08})},
      {"f32", OwnedTensor(DType::kF32, {3}, f)},
      {"bf16", OwnedTensor(DType::kBF16, {1, 2}, bf)},
      {"f16", OwnedTensor(DType::kF16, {2}, std::vector<uint16_t>{0x3C00, 0xC000})},
      {"f8", OwnedTensor(DType::kF8E4M3, {2, 2}, f8)},
      {"i8", OwnedTensor(DType::kI8, {3}, i8)}};
  ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  for (const auto& [name, t] : tensors) {
    auto got = (*file)->GetTensor(name);
    ASSERT_TRUE(got.ok()) << name;
    EXPECT_EQ(got->dtype, t.dtype) << name;
    EXPECT_EQ(got->shape, t.shape) << name;
    ASSERT_EQ(got->size_bytes, t.size_bytes) << name;
    EXPECT_EQ(0, std::memcmp(got->data, t.data, t.size_bytes)) << name;
    // Written wider-first: each tensor starts at a multiple of its element size.
    EXPECT_EQ((*file)->tensors().at(name).begin % DTypeSize(t.dtype), 0u) << name;
  }
  EXPECT_EQ((*file)->GetTensor("f8")->ToFloatVector(),
            (std::vector<float>{448.0f, 1.0f / 512, -0.0f, 1.0f}));
  std::remove(path.c_str());
  // Refused: repeated names, dummy tensors.
  Tensor dummy;
  dummy.shape = {2};
  dummy.size_bytes = 8;
  dummy.dummy_fill = Tensor::DummyFill::kOnes;
  EXPECT_FALSE(WriteSafetensors(path, {{"a", tensors[0].second}, {"a", tensors[0].second}}).ok());
  EXPECT_FALSE(WriteSafetensors(path, {{"d", dummy}}).ok());
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace kiln
