#include "model/model_config.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/mapped_file.h"
#include "model/test_data.h"
#include "model/weights.h"

namespace kiln {
namespace {

const char* kLlamaTopLevel = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 512,
  "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000,
  "rms_norm_eps": 1e-5, "max_position_embeddings": 131072, "rope_theta": 500000.0,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
  "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": [2, 7], "torch_dtype": "float32"})";

const char* kLlamaRopeParameters = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 512,
  "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000,
  "rms_norm_eps": 1e-5, "max_position_embeddings": 131072,
  "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
  "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": [2, 7], "dtype": "float32"})";

TEST(ModelConfigTest, BothRopeStylesParseTheSame) {
  auto a = ParseHfConfig(kLlamaTopLevel);
  auto b = ParseHfConfig(kLlamaRopeParameters);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  for (const ModelConfig* c : {&*a, &*b}) {
    EXPECT_EQ(c->architecture, "llama");
    EXPECT_EQ(c->head_dim, 32);  // derived: 256 / 8
    EXPECT_EQ(c->rope_theta, 500000.0);
    EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
    EXPECT_EQ(c->rope_scaling.factor, 8.0);
    EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
    EXPECT_TRUE(c->tie_word_embeddings);
    EXPECT_FALSE(c->attention_bias);
    EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{2, 7}));
    EXPECT_EQ(c->bos_token_id, 1);
  }
}

TEST(ModelConfigTest, SharedConfigs) {
  const std::string qwen = testing::SharedPath("configs/qwen2.5-0.5b-instruct");
  const std::string llama = testing::SharedPath("configs/llama-3.1-8b-instruct");
  if (qwen.empty() || llama.empty()) GTEST_SKIP() << "missing ../shared/configs";
  auto q = LoadHfConfig(qwen);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->architecture, "qwen2");
  EXPECT_TRUE(q->attention_bias);  // Qwen2 default
  EXPECT_TRUE(q->tie_word_embeddings);
  EXPECT_EQ(q->head_dim, 64);
  EXPECT_EQ(q->num_key_value_heads, 2);
  // generation_config.json: eos ids list and sampling defaults.
  EXPECT_EQ(q->eos_token_ids, (std::vector<int32_t>{151645, 151643}));
  EXPECT_NEAR(q->default_temperature, 0.7f, 1e-6);
  EXPECT_NEAR(q->default_top_p, 0.8f, 1e-6);
  EXPECT_EQ(q->default_top_k, 20);
  EXPECT_NEAR(q->default_repetition_penalty, 1.05f, 1e-6);
  auto l = LoadHfConfig(llama);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(l->eos_token_ids.size(), 3u);
}

TEST(ModelConfigTest, TinyModels) {
  const std::string q2 = testing::SharedPath("models/tiny-qwen2");
  const std::string q3 = testing::SharedPath("models/tiny-qwen3");
  if (q2.empty() || q3.empty()) GTEST_SKIP() << "missing ../shared/models/tiny-qwen*";
  auto a = LoadHfConfig(q2);
  auto b = LoadHfConfig(q3);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->rope_theta, 1000000.0);  // from rope_parameters
  EXPECT_TRUE(a->attention_bias);
  EXPECT_FALSE(a->tie_word_embeddings);
  EXPECT_EQ(a->torch_dtype, "bfloat16");
  EXPECT_TRUE(b->qk_norm);
  EXPECT_EQ(b->head_dim, 64);  // explicit, != hidden / heads
  EXPECT_TRUE(b->tie_word_embeddings);
  EXPECT_TRUE(b->eos_token_ids.empty());  // null
}

TEST(ModelConfigTest, RejectsBadConfigs) {
  const std::string ok = R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10)";
  ASSERT_TRUE(ParseHfConfig(ok + "}").ok());
  auto arch = ParseHfConfig(R"({"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 8})");
  ASSERT_FALSE(arch.ok());
  EXPECT_NE(arch.status().message().find("GPTNeoXForCausalLM"), std::string::npos);
  EXPECT_EQ(arch.status().code(), StatusCode::kUnimplemented);
  for (
      const std::string bad : {
          std::string("not json"),
          std::string("[1, 2]"),
          std::string("{}"),
          ok,                                              // truncated
          ok + R"(, "num_key_value_heads": 3})",           // 4 % 3 != 0
          ok + R"(, "hidden_size": -64})",                 // negative
          ok + R"(, "vocab_size": "10"})",                 // wrong type
          ok + R"(, "num_hidden_layers": 1e9})",           // float / absurd
          ok + R"(, "num_attention_heads": 2000000000})",  // absurd
          ok + R"(, "head_dim": 7})",                      // odd head_dim
          ok + R"(, "rms_norm_eps": 0})",
          ok + R"(, "hidden_act": "gelu"})",
          ok + R"(, "eos_token_id": [1, 99]})",  // outside vocab
          ok + R"(, "eos_token_id": "x"})",
          ok +
              R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0}})",
          ok + R"(, "rope_scaling": 5})",
      }) {
    EXPECT_FALSE(ParseHfConfig(bad).ok()) << bad;
  }
  ModelConfig c = *ParseHfConfig(ok + "}");
  EXPECT_FALSE(ApplyGenerationConfig(R"({"eos_token_id": [1, 1000]})", &c).ok());
  EXPECT_FALSE(ApplyGenerationConfig("{", &c).ok());
  // Sampling defaults out of range name the field (they were taken as given).
  for (const char* bad : {R"({"temperature": -1})", R"({"top_p": 0})", R"({"top_p": 5})",
                          R"({"repetition_penalty": 0})", R"({"repetition_penalty": -2})"}) {
    const Status s = ApplyGenerationConfig(bad, &c);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("generation_config.json"), std::string::npos) << s.ToString();
  }
  EXPECT_TRUE(
      ApplyGenerationConfig(
          R"({"temperature": 0.7, "top_p": 0.8, "repetition_penalty": 1.05, "top_k": 20})", &c)
          .ok());
  EXPECT_TRUE(ApplyGenerationConfig(R"({"eos_token_id": 3, "top_k": 5})", &c).ok());
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{3}));
  EXPECT_EQ(c.default_top_k, 5);
}

// Sliding-window attention is not implemented: where a config applies it (Mistral whenever
// sliding_window is set; Qwen with use_sliding_window), the context is capped at the window, where
// full attention equals it. Mistral's window used to be ignored without a word.
TEST(ModelConfigTest, SlidingWindowCapsTheContext) {
  const std::string base = R"("hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
    "num_attention_heads": 4, "vocab_size": 10, "max_position_embeddings": 4096)";
  auto mistral = ParseHfConfig(R"({"architectures": ["MistralForCausalLM"], )" + base +
                               R"(, "sliding_window": 1024})");
  ASSERT_TRUE(mistral.ok()) << mistral.status().ToString();
  EXPECT_EQ(mistral->max_position_embeddings, 1024);
  auto mistral_null = ParseHfConfig(R"({"architectures": ["MistralForCausalLM"], )" + base +
                                    R"(, "sliding_window": null})");
  ASSERT_TRUE(mistral_null.ok());
  EXPECT_EQ(mistral_null->max_position_embeddings, 4096);
  // Qwen2: only with use_sliding_window (Qwen2.5 configs set a window and false).
  auto qwen_off = ParseHfConfig(R"({"architectures": ["Qwen2ForCausalLM"], )" + base +
                                R"(, "sliding_window": 1024, "use_sliding_window": false})");
  ASSERT_TRUE(qwen_off.ok());
  EXPECT_EQ(qwen_off->max_position_embeddings, 4096);
  auto qwen_on = ParseHfConfig(R"({"architectures": ["Qwen2ForCausalLM"], )" + base +
                               R"(, "sliding_window": 1024, "use_sliding_window": true})");
  ASSERT_TRUE(qwen_on.ok()) << qwen_on.status().ToString();
  EXPECT_EQ(qwen_on->max_position_embeddings, 1024);
  EXPECT_FALSE(ParseHfConfig(R"({"architectures": ["MistralForCausalLM"], )" + base +
                             R"(, "sliding_window": -5})")
                   .ok());
}

TEST(ModelConfigTest, DummyQwen25HasRealShapes) {
  const std::string dir = testing::SharedPath("configs/qwen2.5-0.5b-instruct");
  if (dir.empty()) GTEST_SKIP() << "missing ../shared/configs/qwen2.5-0.5b-instruct";
  ModelOptions options;
  options.model_path = dir;
  options.load_format = "dummy";
  auto model = LoadModel(options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const LlamaWeights& w = (*model)->weights;
  EXPECT_EQ(w.layers.size(), 24u);
  EXPECT_EQ(w.embed_tokens.shape, (std::vector<int64_t>{151936, 896}));
  EXPECT_EQ(w.layers[0].k_proj.shape, (std::vector<int64_t>{128, 896}));
  EXPECT_EQ(w.layers[0].q_bias.shape, (std::vector<int64_t>{896}));
  EXPECT_EQ(w.embed_tokens.dtype, DType::kBF16);
  EXPECT_EQ(w.lm_head.dummy_seed, w.embed_tokens.dummy_seed);  // tied
  EXPECT_EQ(w.layers[0].input_layernorm.DummyValue(5), 1.0f);
  EXPECT_NE(w.layers[0].q_proj.dummy_seed, w.layers[1].q_proj.dummy_seed);
  // ~494M parameters in bf16, lm_head tied.
  EXPECT_NEAR(static_cast<double>(w.size_bytes()), 494032768.0 * 2, 2e6);
  const float v = DummyWeightValue(123, 456);
  EXPECT_EQ(v, DummyWeightValue(123, 456));
  EXPECT_LT(std::fabs(v), 0.02f);
}

}  // namespace
}  // namespace kiln
