#include "model/gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "model/test_data.h"

namespace kiln {
namespace {

// Builds GGUF v3 images for tests.
class GgufWriter {
 public:
  template <typename T>
  void Put(std::string* out, T v) {
    out->append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void PutString(std::string* out, const std::string& s) {
    Put<uint64_t>(out, s.size());
    out->append(s);
  }
  void KvString(const std::string& key, const std::string& value) {
    PutString(&kv_, key);
    Put<uint32_t>(&kv_, 8);
    PutString(&kv_, value);
    ++num_kv_;
  }
  void KvU32(const std::string& key, uint32_t value) {
    PutString(&kv_, key);
    Put<uint32_t>(&kv_, 4);
    Put<uint32_t>(&kv_, value);
    ++num_kv_;
  }
  // Re-emits a parsed value (any type).
  void KvValue(const std::string& key, const GgufValue& v) {
    PutString(&kv_, key);
    Put<uint32_t>(&kv_, static_cast<uint32_t>(v.type));
    if (v.type == GgufType::kArray) {
      Put<uint32_t>(&kv_, static_cast<uint32_t>(v.element_type));
      Put<uint64_t>(&kv_, v.array_size());
      for (const std::string& s : v.strings) PutString(&kv_, s);
      for (double f : v.floats) PutScalar(v.element_type, 0, f);
      for (int64_t i : v.ints) PutScalar(v.element_type, i, 0);
    } else if (v.type == GgufType::kString) {
      PutString(&kv_, v.s);
    } else {
      PutScalar(v.type, v.i, v.f);
    }
    ++num_kv_;
  }
  void PutScalar(GgufType t, int64_t i, double f) {
    switch (t) {
      case GgufType::kUint8:
      case GgufType::kInt8:
      case GgufType::kBool:
        Put<uint8_t>(&kv_, static_cast<uint8_t>(i));
        break;
      case GgufType::kUint16:
      case GgufType::kInt16:
        Put<uint16_t>(&kv_, static_cast<uint16_t>(i));
        break;
      case GgufType::kUint32:
      case GgufType::kInt32:
        Put<uint32_t>(&kv_, static_cast<uint32_t>(i));
        break;
      case GgufType::kUint64:
      case GgufType::kInt64:
        Put<uint64_t>(&kv_, static_cast<uint64_t>(i));
        break;
      case GgufType::kFloat32:
        Put<float>(&kv_, static_cast<float>(f));
        break;
      case GgufType::kFloat64:
        Put<double>(&kv_, f);
        break;
      default:
        break;
    }
  }
  // dims in ggml order (ne0 first).
  void Tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
              const std::string& bytes) {
    PutString(&infos_, name);
    Put<uint32_t>(&infos_, static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) Put<uint64_t>(&infos_, d);
    Put<uint32_t>(&infos_, type);
    while (data_.size() % alignment_ != 0) data_.push_back('\0');
    Put<uint64_t>(&infos_, data_.size());
    data_ += bytes;
    ++num_tensors_;
  }
  std::string Finish() {
    std::string out;
    Put<uint32_t>(&out, 0x46554747);
    Put<uint32_t>(&out, 3);
    Put<uint64_t>(&out, num_tensors_);
    Put<uint64_t>(&out, num_kv_);
    out += kv_ + infos_;
    while (out.size() % alignment_ != 0) out.push_back('\0');
    return out + data_;
  }
  uint64_t alignment_ = 32;

 private:
  std::string kv_, infos_, data_;
  uint64_t num_kv_ = 0, num_tensors_ = 0;
};

StatusOr<std::shared_ptr<const GgufFile>> ParseImage(const std::string& image) {
  auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[image.size() + 1]);
  std::memcpy(buf.get(), image.data(), image.size());
  return GgufFile::Parse(buf, buf.get(), image.size(), "test.gguf");
}

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

uint16_t FloatToHalfBits(float f) {  // exact for the test values used
  uint32_t b;
  std::memcpy(&b, &f, 4);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const int exp = static_cast<int>((b >> 23) & 0xFF) - 127 + 15;
  if ((b & 0x7FFFFFFFu) == 0) return static_cast<uint16_t>(sign);
  return static_cast<uint16_t>(sign | (exp << 10) | ((b >> 13) & 0x3FF));
}

// Writes a GGUF image to a temporary .gguf file, loads it with LoadModel, removes the file.
StatusOr<std::shared_ptr<const LoadedModel>> LoadGgufImage(const std::string& image) {
  char tmpl[] = "/tmp/kiln_gguf_XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd < 0) return Status::IOError("mkstemp failed");
  close(fd);
  const std::string path = std::string(tmpl) + ".gguf";
  std::ofstream(path, std::ios::binary) << image;
  ModelOptions options;
  options.model_path = path;
  auto model = LoadModel(options);
  std::remove(path.c_str());
  std::remove(tmpl);
  return model;
}

std::string SyntheticImage() {
  GgufWriter w;
  w.KvString("general.architecture", "test");
  w.KvU32("general.alignment", 64);
  w.alignment_ = 64;
  const float f32[3] = {1.5f, -2.0f, 3.25f};
  w.Tensor("f32", {3}, 0, Bytes(f32, sizeof(f32)));
  const uint16_t f16[2] = {FloatToHalfBits(0.5f), FloatToHalfBits(-4.0f)};
  w.Tensor("f16", {2}, 1, Bytes(f16, sizeof(f16)));
  // Q8_0: two rows of 32: scale 0.5 and 2.0, values q = k - 16.
  std::string q8;
  for (float scale : {0.5f, 2.0f}) {
    const uint16_t d = FloatToHalfBits(scale);
    q8 += Bytes(&d, 2);
    for (int k = 0; k < 32; ++k) q8.push_back(static_cast<char>(static_cast<int8_t>(k - 16)));
  }
  w.Tensor("q8", {32, 2}, 8, q8);
  return w.Finish();
}

TEST(GgufTest, ParsesSyntheticTensors) {
  auto f = ParseImage(SyntheticImage());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ(*(*f)->GetString("general.architecture"), "test");
  EXPECT_EQ(*(*f)->GetInt("general.alignment"), 64);
  EXPECT_EQ((*f)->GetInt("general.architecture").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*f)->GetInt("nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ((*f)->GetTensor("f32")->ToFloatVector(), (std::vector<float>{1.5f, -2.0f, 3.25f}));
  EXPECT_EQ((*f)->GetTensor("f16")->ToFloatVector(), (std::vector<float>{0.5f, -4.0f}));
  auto q8 = (*f)->GetTensor("q8");
  ASSERT_TRUE(q8.ok());
  EXPECT_EQ(q8->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(q8->dtype, DType::kF32);
  const std::vector<float> v = q8->ToFloatVector();
  EXPECT_EQ(v[0], -8.0f);
  EXPECT_EQ(v[31], 7.5f);
  EXPECT_EQ(v[32], -32.0f);
  EXPECT_EQ(v[63], 30.0f);
}

TEST(GgufTest, EveryTruncationAndCorruptionIsAnError) {
  const std::string image = SyntheticImage();
  for (size_t n = 0; n < image.size(); ++n) {
    // Prefixes that keep every tensor's data would be valid; this image ends with tensor data.
    EXPECT_FALSE(ParseImage(image.substr(0, n)).ok()) << "prefix " << n;
  }
  // Random single-byte corruptions: must return (ok or error), never crash.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string corrupt = image;
    corrupt[rng() % corrupt.size()] = static_cast<char>(rng());
    auto f = ParseImage(corrupt);
    if (f.ok()) {
      for (const GgufTensorInfo& t : (*f)->tensors()) (void)(*f)->GetTensor(t.name);
    }
  }
}

TEST(GgufTest, RejectsBadHeaders) {
  std::string image = SyntheticImage();
  std::string bad = image;
  bad[0] = 'X';  // magic
  EXPECT_FALSE(ParseImage(bad).ok());
  bad = image;
  bad[4] = 1;  // version 1
  EXPECT_FALSE(ParseImage(bad).ok());
  bad = image;
  bad[15] = 0x10;  // absurd tensor count
  EXPECT_FALSE(ParseImage(bad).ok());
  GgufWriter w;
  w.Tensor("odd", {33}, 8, std::string(34, '\0'));  // Q8_0 row not a multiple of 32
  EXPECT_FALSE(ParseImage(w.Finish()).ok());
  GgufWriter w2;
  w2.Tensor("unknown", {4}, 99, std::string(16, '\0'));
  EXPECT_FALSE(ParseImage(w2.Finish()).ok());
  GgufWriter w3;
  w3.Tensor("huge", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, "");
  EXPECT_FALSE(ParseImage(w3.Finish()).ok());
  // Regression (found by the fuzzer): a zero dim beside two huge ones made Tensor::numel overflow.
  GgufWriter w_zero;
  w_zero.Tensor("zero", {uint64_t{1} << 40, uint64_t{1} << 40, 0}, 0, "");
  EXPECT_FALSE(ParseImage(w_zero.Finish()).ok());
  GgufWriter w4;
  w4.KvU32("general.alignment", 3);
  EXPECT_FALSE(ParseImage(w4.Finish()).ok());
  GgufWriter w5;
  w5.KvString("general.architecture", "gpt2");
  const float one = 1.0f;
  w5.Tensor("token_embd.weight", {1, 1}, 0, Bytes(&one, 4));
  auto f5 = ParseImage(w5.Finish());
  ASSERT_TRUE(f5.ok());
  auto config = ModelConfigFromGguf(**f5);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("gpt2"), std::string::npos);
}

TEST(GgufTest, Stories260KMetadataAndConfig) {
  const std::string path = testing::SharedPath("models/stories260K/stories260K.gguf");
  if (path.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K/stories260K.gguf";
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ(*(*f)->GetString("general.architecture"), "llama");
  EXPECT_EQ(*(*f)->GetString("tokenizer.ggml.model"), "llama");
  auto tokens = (*f)->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ((*f)->GetFloatArray("tokenizer.ggml.scores")->size(), 512u);
  EXPECT_EQ((*f)->GetIntArray("tokenizer.ggml.token_type")->size(), 512u);
  auto config = ModelConfigFromGguf(**f);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->hidden_size, 64);
  EXPECT_EQ(config->num_hidden_layers, 5);
  EXPECT_EQ(config->num_attention_heads, 8);
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->vocab_size, 512);
  // This file carries output.weight (a copy of token_embd), so it loads untied.
  EXPECT_EQ(config->tie_word_embeddings, (*f)->FindTensor("output.weight") == nullptr);
  EXPECT_EQ(config->bos_token_id, 1);
  // The GGUF q/k weights, un-permuted, equal the HF checkpoint's.
  ModelOptions hf_options, gguf_options;
  hf_options.model_path = testing::SharedPath("models/stories260K/hf");
  gguf_options.model_path = path;
  if (hf_options.model_path.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K/hf";
  auto hf = LoadModel(hf_options);
  auto gguf = LoadModel(gguf_options);
  ASSERT_TRUE(hf.ok() && gguf.ok()) << gguf.status().ToString();
  EXPECT_EQ((*gguf)->format, "gguf");
  ASSERT_NE((*gguf)->gguf, nullptr);
  EXPECT_EQ((*hf)->weights.lm_head.ToFloatVector(), (*gguf)->weights.lm_head.ToFloatVector());
  for (int l : {0, 4}) {
    EXPECT_EQ((*hf)->weights.layers[l].q_proj.ToFloatVector(),
              (*gguf)->weights.layers[l].q_proj.ToFloatVector());
    EXPECT_EQ((*hf)->weights.layers[l].k_proj.ToFloatVector(),
              (*gguf)->weights.layers[l].k_proj.ToFloatVector());
    EXPECT_EQ((*hf)->weights.layers[l].down_proj.ToFloatVector(),
              (*gguf)->weights.layers[l].down_proj.ToFloatVector());
  }
}

TEST(GgufTest, Stories260KTruncationsFail) {
  const std::string path = testing::SharedPath("models/stories260K/stories260K.gguf");
  if (path.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K/stories260K.gguf";
  auto text = ReadFileToString(path);
  ASSERT_TRUE(text.ok());
  for (size_t n = 0; n < text->size(); n += 4099) {
    EXPECT_FALSE(ParseImage(text->substr(0, n)).ok()) << "prefix " << n;
  }
}

// stories260K re-encoded with Q8_0 matrices loads (dequantized) and stays close to the F32 model.
TEST(GgufTest, Q8_0ModelLoads) {
  const std::string path = testing::SharedPath("models/stories260K/stories260K.gguf");
  if (path.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K/stories260K.gguf";
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok());
  GgufWriter w;
  for (const auto& [key, value] : (*f)->metadata())
    if (key != "general.alignment") w.KvValue(key, value);
  int quantized = 0;
  for (const GgufTensorInfo& t : (*f)->tensors()) {
    ASSERT_EQ(t.type, GgmlType::kF32);
    std::vector<uint64_t> dims(t.dims.begin(), t.dims.end());
    const float* src = reinterpret_cast<const float*>(t.data);
    if (dims.size() == 2 && dims[0] % 32 == 0) {
      std::string q8;
      for (uint64_t b = 0; b < t.size_bytes / 4 / 32; ++b) {
        float amax = 0;
        for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(src[b * 32 + k]));
        const float d = amax / 127.0f;
        // Round the scale to f16 precision by truncation (FloatToHalfBits) and quantize with it.
        const uint16_t dh = FloatToHalfBits(d);
        const float dq = HalfToFloat(dh);
        q8 += Bytes(&dh, 2);
        for (int k = 0; k < 32; ++k)
          q8.push_back(static_cast<char>(static_cast<int8_t>(
              std::clamp(std::lround(dq > 0 ? src[b * 32 + k] / dq : 0.0f), -127l, 127l))));
      }
      w.Tensor(t.name, dims, 8, q8);
      ++quantized;
    } else {
      w.Tensor(t.name, dims, 0, Bytes(t.data, t.size_bytes));
    }
  }
  EXPECT_GT(quantized, 10);
  auto q8_model = LoadGgufImage(w.Finish());
  ModelOptions options;
  options.model_path = path;
  auto f32_model = LoadModel(options);
  ASSERT_TRUE(q8_model.ok()) << q8_model.status().ToString();
  ASSERT_TRUE(f32_model.ok());
  const auto a = (*q8_model)->weights.layers[2].q_proj.ToFloatVector();
  const auto b = (*f32_model)->weights.layers[2].q_proj.ToFloatVector();
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
  }
  EXPECT_GT(max_diff, 0.0);              // really quantized
  EXPECT_LT(max_diff, max_ref / 100.0);  // int8 with per-block scales: < 1% of the range
}

// Llama-3.x GGUFs carry their llama3 rope scaling as a `rope_freqs.weight` tensor
// ([head_dim / 2] divisors of inv_freq); it reaches ModelConfig::rope_freq_factors, and a tensor of
// the wrong size is an error naming it.
TEST(GgufTest, RopeFreqsTensorBecomesRopeFreqFactors) {
  const std::string path = testing::SharedPath("models/stories260K/stories260K.gguf");
  if (path.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K/stories260K.gguf";
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok());
  auto with_freqs = [&](const std::vector<float>& freqs) {
    GgufWriter w;
    for (const auto& [key, value] : (*f)->metadata())
      if (key != "general.alignment") w.KvValue(key, value);
    for (const GgufTensorInfo& t : (*f)->tensors()) {
      std::vector<uint64_t> dims(t.dims.begin(), t.dims.end());
      w.Tensor(t.name, dims, 0, Bytes(t.data, t.size_bytes));
    }
    w.Tensor("rope_freqs.weight", {freqs.size()}, 0, Bytes(freqs.data(), freqs.size() * 4));
    return LoadGgufImage(w.Finish());
  };
  const std::vector<float> freqs = {1.0f, 1.5f, 4.0f, 8.0f};  // stories260K: head_dim 8
  auto model = with_freqs(freqs);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->config.rope_freq_factors, freqs);
  auto bad = with_freqs({1.0f, 2.0f});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rope_freqs"), std::string::npos);
}

// A qwen2 GGUF written from tiny-qwen2's safetensors (BF16 tensors, llama.cpp names, no rotary
// permutation for qwen2) loads to the same config and weights as the HF directory.
TEST(GgufTest, Qwen2GgufMatchesHfDirectory) {
  const std::string dir = testing::SharedPath("models/tiny-qwen2");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/models/tiny-qwen2";
  ModelOptions options;
  options.model_path = dir;
  auto hf = LoadModel(options);
  ASSERT_TRUE(hf.ok()) << hf.status().ToString();
  const ModelConfig& c = (*hf)->config;
  GgufWriter w;
  w.KvString("general.architecture", "qwen2");
  w.KvU32("qwen2.embedding_length", c.hidden_size);
  w.KvU32("qwen2.feed_forward_length", c.intermediate_size);
  w.KvU32("qwen2.block_count", c.num_hidden_layers);
  w.KvU32("qwen2.attention.head_count", c.num_attention_heads);
  w.KvU32("qwen2.attention.head_count_kv", c.num_key_value_heads);
  w.KvU32("qwen2.context_length", c.max_position_embeddings);
  GgufValue f;
  f.type = GgufType::kFloat32;
  f.f = c.rms_norm_eps;
  w.KvValue("qwen2.attention.layer_norm_rms_epsilon", f);
  f.f = c.rope_theta;
  w.KvValue("qwen2.rope.freq_base", f);
  auto put = [&](const std::string& name, const Tensor& t) {
    ASSERT_EQ(t.dtype, DType::kBF16);
    std::vector<uint64_t> dims(t.shape.rbegin(), t.shape.rend());
    w.Tensor(name, dims, 30, Bytes(t.data, t.size_bytes));
  };
  const LlamaWeights& hw = (*hf)->weights;
  put("token_embd.weight", hw.embed_tokens);
  put("output_norm.weight", hw.norm);
  put("output.weight", hw.lm_head);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const LlamaWeights::Layer& l = hw.layers[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    put(p + "attn_norm.weight", l.input_layernorm);
    put(p + "attn_q.weight", l.q_proj);
    put(p + "attn_k.weight", l.k_proj);
    put(p + "attn_v.weight", l.v_proj);
    put(p + "attn_q.bias", l.q_bias);
    put(p + "attn_k.bias", l.k_bias);
    put(p + "attn_v.bias", l.v_bias);
    put(p + "attn_output.weight", l.o_proj);
    put(p + "ffn_norm.weight", l.post_attention_layernorm);
    put(p + "ffn_gate.weight", l.gate_proj);
    put(p + "ffn_up.weight", l.up_proj);
    put(p + "ffn_down.weight", l.down_proj);
  }
  auto gguf = LoadGgufImage(w.Finish());
  ASSERT_TRUE(gguf.ok()) << gguf.status().ToString();
  const ModelConfig& g = (*gguf)->config;
  EXPECT_EQ(g.architecture, "qwen2");
  EXPECT_TRUE(g.attention_bias);
  EXPECT_EQ(g.head_dim, c.head_dim);
  EXPECT_EQ(g.vocab_size, c.vocab_size);
  EXPECT_FALSE(g.tie_word_embeddings);
  EXPECT_FLOAT_EQ(static_cast<float>(g.rms_norm_eps), static_cast<float>(c.rms_norm_eps));
  EXPECT_EQ(g.rope_theta, c.rope_theta);
  const LlamaWeights& gw = (*gguf)->weights;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    EXPECT_EQ(gw.layers[i].q_proj.ToFloatVector(),
              hw.layers[i].q_proj.ToFloatVector());  // no permute
    EXPECT_EQ(gw.layers[i].k_bias.ToFloatVector(), hw.layers[i].k_bias.ToFloatVector());
    EXPECT_EQ(gw.layers[i].down_proj.ToFloatVector(), hw.layers[i].down_proj.ToFloatVector());
  }
  EXPECT_EQ(gw.lm_head.ToFloatVector(), hw.lm_head.ToFloatVector());
}

}  // namespace
}  // namespace kiln
