// FP8 checkpoints end to end on the CPU: tinystories-656k quantized (block 128×128, per-channel,
// per-tensor), written by WriteQuantizedCheckpoint, reloads through LoadModel with every stored
// byte and scale equal to the quantizer's output and gives identical logits on the CPU backend;
// loaded with --quantization none it gives the same logits as the in-memory dequantization;
// malformed checkpoints are refused with errors naming the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/backend_test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "model/llama_projections.h"
#include "model/mapped_file.h"
#include "model/quantized_weights.h"
#include "model/safetensors.h"
#include "model/safetensors_writer.h"
#include "model/test_data.h"
#include "quant/checkpoint_writer.h"
#include "quant/fp8_quant.h"

namespace kiln::quant {
namespace {

namespace fs = std::filesystem;
using kiln::testing::SharedPath;

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name)
      : path((fs::temp_directory_path() / (name + "_" + std::to_string(getpid()))).string()) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

StatusOr<std::shared_ptr<const LoadedModel>> Load(const std::string& path,
                                                  const std::string& quantization = "auto") {
  ModelOptions options;
  options.model_path = path;
  options.quantization = quantization;
  return LoadModel(options);
}

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.size_bytes == b.size_bytes && a.dtype == b.dtype &&
         std::memcmp(a.data, b.data, a.size_bytes) == 0;
}

std::vector<float> Logits(std::shared_ptr<const LoadedModel> model,
                          const std::vector<int32_t>& ids) {
  CpuBackendOptions options;
  options.num_kv_blocks = 16;
  options.num_threads = 2;
  auto backend = CreateCpuBackend(std::move(model), options);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  std::vector<float> logits;
  if (!backend.ok()) return logits;
  EXPECT_TRUE((*backend)->Forward(kiln::testing::SingleSequenceBatch(ids, 0, 16, 16, true)).ok());
  EXPECT_TRUE((*backend)->GetLogits(&logits).ok());
  return logits;
}

void CheckRoundTrip(ScaleGranularity granularity) {
  const std::string dir = SharedPath("models/tinystories-656k");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/tinystories-656k";
  auto dense = Load(dir);
  ASSERT_TRUE(dense.ok()) << dense.status().ToString();
  auto quantized = QuantizeLlamaWeightsFp8((*dense)->weights, Fp8Quantization(granularity));
  ASSERT_TRUE(quantized.ok()) << quantized.status().ToString();
  TempDir out("kiln_fp8_ckpt");
  ASSERT_TRUE(WriteQuantizedCheckpoint(**dense, *quantized, out.path).ok());
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json",
                        "tokenizer_config.json", "generation_config.json"})
    EXPECT_TRUE(FileExists(out.path + "/" + f)) << f;

  auto reloaded = Load(out.path);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().ToString();
  const LlamaWeights& w = (*reloaded)->weights;
  EXPECT_EQ(w.quantization, Fp8Quantization(granularity));
  ASSERT_EQ(w.layers.size(), quantized->layers.size());
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const auto got = LayerProjections(w.layers[i]);
    const auto want = LayerProjections(std::as_const(quantized->layers[i]));
    for (size_t p = 0; p < got.size(); ++p) {
      EXPECT_TRUE(SameBytes(*got[p].weight, *want[p].weight)) << i << " " << got[p].module;
      EXPECT_EQ(got[p].scales->weight.shape, want[p].scales->weight.shape) << got[p].module;
      EXPECT_EQ(got[p].scales->weight.ToFloatVector(), want[p].scales->weight.ToFloatVector());
      // Dequantized weights equal bit for bit.
      const LinearWeight a =
          ProjectionLinearWeight(w.quantization, *got[p].weight, *got[p].scales, "reloaded");
      const LinearWeight b = ProjectionLinearWeight(quantized->quantization, *want[p].weight,
                                                    *want[p].scales, "quantized");
      std::vector<float> da(static_cast<size_t>(a.out_features * a.in_features)), db(da.size());
      a.DequantizeRows(0, a.out_features, da.data());
      b.DequantizeRows(0, b.out_features, db.data());
      EXPECT_EQ(da, db);
    }
  }
  EXPECT_TRUE(SameBytes(w.embed_tokens, quantized->embed_tokens));
  EXPECT_TRUE(SameBytes(w.norm, quantized->norm));
  EXPECT_EQ(w.lm_head.data, w.embed_tokens.data);  // still tied

  // --quantization none: the dequantized reload computes the same logits as the quantizer's
  // output dequantized in memory.
  auto none = Load(out.path, "none");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE((*none)->weights.quantization.dense());
  auto in_memory = std::make_shared<LoadedModel>(**dense);
  in_memory->weights = *quantized;
  ASSERT_TRUE(DequantizeProjections(&in_memory->weights).ok());
  const std::vector<int32_t> ids = {1, 80, 147, 201, 282, 215, 286, 229, 2047, 10};
  const std::vector<float> a = Logits(*none, ids), b = Logits(in_memory, ids);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  // As stored (FP8 weights, FP8 activations): the reload computes exactly the logits of the
  // quantizer's output held in memory.
  auto fp8_in_memory = std::make_shared<LoadedModel>(**dense);
  fp8_in_memory->weights = *quantized;
  const std::vector<float> stored = Logits(*reloaded, ids);
  ASSERT_FALSE(stored.empty());
  EXPECT_EQ(stored, Logits(fp8_in_memory, ids));
  EXPECT_NE(stored, a);  // activation quantization is on
  // And they are FP8's, not the dense model's.
  const std::vector<float> d = Logits(*dense, ids);
  EXPECT_NE(a, d);
  EXPECT_LE(kiln::testing::RelativeError(a, d), 0.1);
}

TEST(QuantizedCheckpointTest, BlockFp8RoundTrip) { CheckRoundTrip(ScaleGranularity::kPerBlock); }
TEST(QuantizedCheckpointTest, PerChannelRoundTrip) {
  CheckRoundTrip(ScaleGranularity::kPerChannel);
}
TEST(QuantizedCheckpointTest, PerTensorRoundTrip) { CheckRoundTrip(ScaleGranularity::kPerTensor); }

// The tokenizer and chat-template files travel with the checkpoint (a chat_template.jinja is
// what newer transformers write, and kiln's own tokenizer loader reads it).
TEST(QuantizedCheckpointTest, CopiesTokenizerAndChatTemplateFiles) {
  const std::string dir = SharedPath("models/tinystories-656k");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/tinystories-656k";
  TempDir src("kiln_fp8_src"), out("kiln_fp8_out");
  fs::copy(dir, src.path, fs::copy_options::recursive);
  const std::string tmpl = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
  std::ofstream(src.path + "/chat_template.jinja") << tmpl;
  auto dense = Load(src.path);
  ASSERT_TRUE(dense.ok()) << dense.status().ToString();
  auto q = QuantizeLlamaWeightsFp8((*dense)->weights, Fp8Quantization(ScaleGranularity::kPerChannel));
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(WriteQuantizedCheckpoint(**dense, *q, out.path).ok());
  auto copied = ReadFileToString(out.path + "/chat_template.jinja");
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_EQ(*copied, tmpl);
}

// Block-FP8 output is portable only where every fused part and input is whole blocks.
TEST(QuantizedCheckpointTest, BlockFp8PortabilityNamesTheSizes) {
  ModelConfig c;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  EXPECT_TRUE(CheckBlockFp8Portable(c, 128).ok());  // Llama-3.1-8B
  c.hidden_size = 576;                               // SmolLM2-135M
  c.intermediate_size = 1536;
  c.num_attention_heads = 9;
  c.num_key_value_heads = 3;
  c.head_dim = 64;
  const Status s = CheckBlockFp8Portable(c, 128);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("hidden_size 576"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("kv size (kv heads x head_dim) 192"), std::string::npos);
  EXPECT_EQ(s.message().find("intermediate_size"), std::string::npos) << "1536 is whole blocks";
}

// Rewrites out/config.json's quantization_config and drops or replaces tensors of
// model.safetensors, then expects LoadModel to fail with `code` and a message containing `what`.
class BrokenCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = SharedPath("models/tinystories-656k");
    if (dir_.empty()) GTEST_SKIP() << "missing ../shared/models/tinystories-656k";
    auto dense = Load(dir_);
    ASSERT_TRUE(dense.ok());
    dense_ = *dense;
    auto q = QuantizeLlamaWeightsFp8(dense_->weights, Fp8Quantization(ScaleGranularity::kPerBlock));
    ASSERT_TRUE(q.ok());
    quantized_ = *q;
    ASSERT_TRUE(WriteQuantizedCheckpoint(*dense_, quantized_, out_.path).ok());
  }
  void Expect(StatusCode code, const std::string& what) {
    auto m = Load(out_.path);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), code) << m.status().ToString();
    EXPECT_NE(m.status().ToString().find(what), std::string::npos) << m.status().ToString();
  }
  void SetQuantizationConfig(const std::string& qc) {
    auto text = ReadFileToString(out_.path + "/config.json");
    auto j = nlohmann::json::parse(*text);
    j["quantization_config"] = nlohmann::json::parse(qc);
    std::ofstream(out_.path + "/config.json") << j.dump();
  }
  // model.safetensors with tensor `name` removed (replacement undefined) or replaced.
  void ReplaceTensor(const std::string& name, const Tensor& replacement) {
    auto file = SafetensorsFile::Open(out_.path + "/model.safetensors");
    ASSERT_TRUE(file.ok());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& [n, info] : (*file)->tensors()) {
      if (n == name) {
        if (replacement.defined()) tensors.emplace_back(n, replacement);
        continue;
      }
      tensors.emplace_back(n, *(*file)->GetTensor(n));
    }
    ASSERT_TRUE(WriteSafetensors(out_.path + "/model.safetensors.new", tensors).ok());
    file->reset();
    fs::rename(out_.path + "/model.safetensors.new", out_.path + "/model.safetensors");
  }
  std::string dir_;
  std::shared_ptr<const LoadedModel> dense_;
  LlamaWeights quantized_;
  TempDir out_{"kiln_fp8_broken"};
};

TEST_F(BrokenCheckpointTest, UnsupportedQuantMethod) {
  SetQuantizationConfig(R"({"quant_method": "gptq", "bits": 4})");
  Expect(StatusCode::kUnimplemented, "quant_method 'gptq' is not supported");
}

TEST_F(BrokenCheckpointTest, MissingScale) {
  ReplaceTensor("model.layers.1.mlp.up_proj.weight_scale_inv", Tensor());
  Expect(StatusCode::kNotFound, "model.layers.1.mlp.up_proj.weight_scale_inv");
}

TEST_F(BrokenCheckpointTest, ScaleOfWrongSize) {
  ReplaceTensor("model.layers.0.self_attn.q_proj.weight_scale_inv",
                OwnedFloatTensor({2}, {1.0f, 1.0f}));
  Expect(StatusCode::kInvalidArgument, "q_proj.weight_scale_inv' has shape [2], expected [1, 1]");
}

// gate_proj is 384 × 128: its block grid is [3, 1]. The same three values stored as [1, 3] (a
// transposed grid) are refused, not reinterpreted.
TEST_F(BrokenCheckpointTest, TransposedScaleGrid) {
  ReplaceTensor("model.layers.0.mlp.gate_proj.weight_scale_inv",
                OwnedFloatTensor({1, 3}, quantized_.layers[0].gate_scales.weight.ToFloatVector()));
  Expect(StatusCode::kInvalidArgument, "gate_proj.weight_scale_inv' has shape [1, 3], expected [3, 1]");
}

TEST_F(BrokenCheckpointTest, NonFiniteOrNegativeWeightScale) {
  for (float bad : {NAN, INFINITY, -0.5f}) {
    std::vector<float> v = quantized_.layers[1].up_scales.weight.ToFloatVector();
    v[2] = bad;
    ReplaceTensor("model.layers.1.mlp.up_proj.weight_scale_inv", OwnedFloatTensor({3, 1}, v));
    Expect(StatusCode::kInvalidArgument, "up_proj.weight_scale_inv' element 2 is");
  }
}

// A zero, negative or NaN static input scale (compressed-tensors per-tensor, written by PyTorch in
// tests/data/fp8) is refused naming the tensor.
TEST(QuantizedCheckpointScalesTest, BadStaticInputScale) {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  const std::string fixture =
      std::string(src != nullptr ? src : ".") + "/tests/data/fp8/stories260k-ct-tensor";
  if (!fs::exists(fixture + "/model.safetensors")) GTEST_SKIP() << "no " << fixture;
  auto good = Load(fixture);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  TempDir dir("kiln_fp8_input_scale");
  for (float bad : {0.0f, -0.01f, NAN}) {
    fs::remove_all(dir.path);
    fs::copy(fixture, dir.path, fs::copy_options::recursive);
    auto file = SafetensorsFile::Open(fixture + "/model.safetensors");
    ASSERT_TRUE(file.ok());
    std::vector<std::pair<std::string, Tensor>> tensors;
    const std::string name = "model.layers.2.self_attn.o_proj.input_scale";
    for (const auto& [n, info] : (*file)->tensors()) {
      if (n == name) {
        tensors.emplace_back(n, OwnedFloatTensor({1}, {bad}));
      } else {
        tensors.emplace_back(n, *(*file)->GetTensor(n));
      }
    }
    ASSERT_TRUE(WriteSafetensors(dir.path + "/model.safetensors", tensors).ok());
    auto m = Load(dir.path);
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find(name + "' element 0 is"), std::string::npos)
        << m.status().ToString();
  }
}

TEST_F(BrokenCheckpointTest, DenseProjectionInQuantizedCheckpoint) {
  ReplaceTensor("model.layers.0.mlp.down_proj.weight", dense_->weights.layers[0].down_proj);
  Expect(StatusCode::kUnimplemented, "model.layers.0.mlp.down_proj.weight is stored as F32");
}

TEST_F(BrokenCheckpointTest, StaticActivationsWithoutInputScale) {
  SetQuantizationConfig(R"({"quant_method": "fp8", "activation_scheme": "static"})");
  // Per-tensor format: q_proj's [1, 1] weight_scale_inv is read as transformers' per-tensor
  // spelling of weight_scale; the missing input scale is named.
  Expect(StatusCode::kNotFound, "model.layers.0.self_attn.q_proj.input_scale");
}

}  // namespace
}  // namespace kiln::quant
