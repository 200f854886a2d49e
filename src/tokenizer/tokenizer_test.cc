// The tokenizer against reference outputs: the shared Qwen2.5/Qwen3 cases and llama.cpp vectors
// (HF tokenizers), stories260K's greedy text, and HF tokenizers outputs for a Llama-3-style
// tokenizer.json and for stories260K (testdata/, generated with the Rust library).
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "tokenizer/byte_level.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer_factory.h"
#include "tokenizer/tokenizer_test_util.h"
#include "tokenizer/utf8.h"

namespace kiln {
namespace {

using json = nlohmann::json;
using tokenizer::testing::ReadJsonFile;
using tokenizer::testing::ReadText;
using tokenizer::testing::SharedDir;
using tokenizer::testing::StreamDecode;
using tokenizer::testing::TestDataDir;

std::vector<int32_t> Ids(const json& array) { return array.get<std::vector<int32_t>>(); }

std::unique_ptr<Tokenizer> LoadOrSkip(const std::filesystem::path& path) {
  auto tok = CreateTokenizerFromJson(path.string());
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

// The big Qwen vocabularies take a second to load: each is loaded once per test binary.
const Tokenizer* SharedQwen(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>>* cache =
      new std::map<std::string, std::unique_ptr<Tokenizer>>();
  auto it = cache->find(name);
  if (it == cache->end()) {
    it = cache->emplace(name, LoadOrSkip(SharedDir() / "tokenizers" / name)).first;
  }
  return it->second.get();
}

#define SKIP_IF_MISSING(path) \
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "missing " << (path).string()

// Every case: encode (no special tokens), decode, streaming decode.
void CheckCases(const Tokenizer& tok, const json& cases, const std::string& name) {
  ASSERT_TRUE(cases.is_array()) << name;
  ASSERT_FALSE(cases.empty()) << name;
  for (const json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> ids = Ids(c["ids"]);
    EXPECT_EQ(tok.Encode(text, false), ids) << name << ": " << text;
    auto decoded = tok.Decode(ids, false);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    const std::string expected = c.contains("decoded") ? c["decoded"].get<std::string>() : text;
    EXPECT_EQ(*decoded, expected) << name << ": " << text;
    EXPECT_EQ(StreamDecode(tok, ids, false), expected) << name << " (streaming): " << text;
    if (c.contains("ids_special")) {
      const std::vector<int32_t> with_special = Ids(c["ids_special"]);
      EXPECT_EQ(tok.Encode(text, true), with_special) << name << " (add_special_tokens): " << text;
      EXPECT_EQ(*tok.Decode(with_special, false), c["decoded_special"].get<std::string>()) << text;
      EXPECT_EQ(*tok.Decode(with_special, true), c["decoded_special_skipped"].get<std::string>())
          << text;
      EXPECT_EQ(StreamDecode(tok, with_special, false), c["decoded_special"].get<std::string>())
          << text;
      EXPECT_EQ(StreamDecode(tok, with_special, true),
                c["decoded_special_skipped"].get<std::string>())
          << text;
    }
  }
}

class SharedTokenizerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SharedTokenizerTest, CasesMatchHfTokenizers) {
  const auto dir = SharedDir() / "tokenizers" / GetParam();
  SKIP_IF_MISSING(dir / "cases.json");
  const Tokenizer* tok = SharedQwen(GetParam());
  ASSERT_NE(tok, nullptr);
  CheckCases(*tok, ReadJsonFile(dir / "cases.json")["cases"], GetParam());
}

INSTANTIATE_TEST_SUITE_P(Qwen, SharedTokenizerTest, ::testing::Values("qwen2.5", "qwen3"));

TEST(QwenTokenizerTest, LlamaCppVectors) {
  const auto dir = SharedDir() / "tokenizers" / "qwen2.5";
  SKIP_IF_MISSING(dir / "llamacpp_vectors.out");
  const Tokenizer* tok = SharedQwen("qwen2.5");
  ASSERT_NE(tok, nullptr);
  const json inputs = ReadJsonFile(dir / "llamacpp_vectors_cases.json");
  std::istringstream out(ReadText(dir / "llamacpp_vectors.out"));
  ASSERT_TRUE(inputs.is_array());
  int checked = 0;
  for (const json& input : inputs) {
    std::string line;
    ASSERT_TRUE(std::getline(out, line)) << "llamacpp_vectors.out has fewer lines than cases";
    std::vector<int32_t> expected;
    std::istringstream fields(line);
    for (int32_t id; fields >> id;) expected.push_back(id);
    const std::string text = input.get<std::string>();
    EXPECT_EQ(tok->Encode(text, false), expected) << text;
    EXPECT_EQ(*tok->Decode(expected, false), text);
    EXPECT_EQ(StreamDecode(*tok, expected, false), text);
    ++checked;
  }
  EXPECT_EQ(checked, 43);
}

TEST(QwenTokenizerTest, SpecialTokensAndMetadata) {
  const auto dir = SharedDir() / "tokenizers" / "qwen2.5";
  SKIP_IF_MISSING(dir / "tokenizer.json");
  const Tokenizer* tok = SharedQwen("qwen2.5");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 151665);
  EXPECT_EQ(tok->eos_token(), "<|im_end|>");
  EXPECT_EQ(tok->eos_token_id(), 151645);
  EXPECT_EQ(tok->bos_token_id(), -1);
  EXPECT_TRUE(tok->IsSpecial(151644));
  EXPECT_FALSE(tok->IsSpecial(9707));
  EXPECT_EQ(tok->PieceToId("<|im_start|>"), 151644);
  EXPECT_EQ(tok->PieceToId("Ġworld"), 1879);
  EXPECT_EQ(tok->IdToPiece(1879), "Ġworld");
  EXPECT_EQ(tok->TokenBytes(1879), " world");
  EXPECT_EQ(tok->TokenBytes(151644), "<|im_start|>");
  EXPECT_EQ(tok->PieceToId("no such piece"), -1);
  EXPECT_TRUE(tok->has_chat_template());
  // Qwen adds nothing with add_special_tokens.
  EXPECT_EQ(tok->Encode("Hello world", true), (std::vector<int32_t>{9707, 1879}));
  auto bad = tok->Decode(std::vector<int32_t>{9707, 151665}, false);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  auto negative = tok->Decode(std::vector<int32_t>{-1}, false);
  EXPECT_EQ(negative.status().code(), StatusCode::kInvalidArgument);
  // Skipping special tokens.
  const auto ids = tok->Encode("<|im_start|>user\nHi<|im_end|>", false);
  EXPECT_EQ(*tok->Decode(ids, true), "user\nHi");
}

// 104 KB of mixed Chinese/English prose (the benchmark text): the ids must be HF tokenizers'
// (0.23.2) exactly. Stored as their count and FNV-1a-64 over the little-endian int32 ids.
TEST(QwenTokenizerTest, MixedChineseEnglishTextMatchesHfTokenizers) {
  const auto dir = SharedDir() / "tokenizers" / "qwen2.5";
  const auto text_path =
      std::filesystem::path(std::getenv("KILN_SOURCE_DIR") ? std::getenv("KILN_SOURCE_DIR") : ".") /
      "bench" / "data" / "mixed_zh_en.txt";
  SKIP_IF_MISSING(dir / "tokenizer.json");
  SKIP_IF_MISSING(text_path);
  const Tokenizer* tok = SharedQwen("qwen2.5");
  ASSERT_NE(tok, nullptr);
  const std::string text = ReadText(text_path);
  const std::vector<int32_t> ids = tok->Encode(text, false);
  uint64_t hash = 0xcbf29ce484222325ull;
  for (int32_t id : ids) {
    for (int b = 0; b < 4; ++b) {
      hash ^= (static_cast<uint32_t>(id) >> (8 * b)) & 0xFF;
      hash *= 0x100000001b3ull;
    }
  }
  EXPECT_EQ(ids.size(), 24150u);
  EXPECT_EQ(hash, 0xdfa7a277112c272full);
  EXPECT_EQ(*tok->Decode(ids, false), text);
  EXPECT_EQ(StreamDecode(*tok, ids, false), text);
}

TEST(QwenTokenizerTest, ChatTemplateCases) {
  const auto dir = SharedDir() / "tokenizers" / "qwen2.5";
  SKIP_IF_MISSING(dir / "chat_template_cases.json");
  const Tokenizer* tok = SharedQwen("qwen2.5");
  ASSERT_NE(tok, nullptr);
  const json cases = ReadJsonFile(dir / "chat_template_cases.json")["cases"];
  ASSERT_TRUE(cases.is_array());
  for (const json& c : cases) {
    ChatTemplateOptions options;
    options.add_generation_prompt = c.value("add_generation_prompt", false);
    options.continue_final_message = c.value("continue_final_message", false);
    auto rendered = tok->ApplyChatTemplate(c["messages"], options);
    ASSERT_TRUE(rendered.ok()) << rendered.status().ToString();
    EXPECT_EQ(*rendered, c["rendered"].get<std::string>());
  }
  // An explicit template overrides the tokenizer's; a broken one is an error, not a crash.
  ChatTemplateOptions options;
  options.chat_template = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}";
  EXPECT_EQ(*tok->ApplyChatTemplate(json::parse(R"([{"role": "user", "content": "hi"}])"), options),
            "[user]hi");
  options.chat_template = "{% for m in messages %}";
  EXPECT_FALSE(tok->ApplyChatTemplate(json::array(), options).ok());
}

// Byte-level streaming: nothing is emitted inside a character, an invalid byte's U+FFFD at once,
// and the whole equals the full decode.
TEST(QwenTokenizerTest, StreamingHoldsOnlyIncompleteCharacters) {
  const Tokenizer* tok = SharedQwen("qwen2.5");
  if (tok == nullptr) GTEST_SKIP() << "missing ../shared/tokenizers/qwen2.5";
  auto byte_id = [&](uint8_t b) {
    return tok->PieceToId(tokenizer::BytesToByteLevel(std::string(1, static_cast<char>(b))));
  };
  const std::vector<int32_t> ids = {9707,          byte_id(0xE4), byte_id(0xB8), byte_id(0xAD),
                                    byte_id(0xFF), byte_id(0xFF), byte_id(0xF0), 1879};
  auto stream = tok->NewDetokenizer(false);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(stream->Push(id));
  const std::string flushed = stream->Flush();
  EXPECT_EQ(pieces[0], "Hello");
  EXPECT_EQ(pieces[1], "");
  EXPECT_EQ(pieces[2], "");
  EXPECT_EQ(pieces[3], "\xE4\xB8\xAD");
  EXPECT_EQ(pieces[4], "\xEF\xBF\xBD");
  EXPECT_EQ(pieces[5], "\xEF\xBF\xBD");
  EXPECT_EQ(pieces[6], "");  // F0 starts a 4-byte character
  EXPECT_EQ(pieces[7], "\xEF\xBF\xBD world");
  EXPECT_EQ(flushed, "");
  std::string all;
  for (const auto& p : pieces) all += p;
  EXPECT_EQ(all, *tok->Decode(ids, false));
  // A stream that ends inside a character gives its U+FFFD at Flush.
  auto tail = tok->NewDetokenizer(false);
  EXPECT_EQ(tail->Push(byte_id(0xE4)), "");
  EXPECT_EQ(tail->Flush(), "\xEF\xBF\xBD");
}

// Random id sequences (fixed seed), byte tokens and special tokens included: streaming equals
// the full decode, with and without skipping special tokens.
TEST(QwenTokenizerTest, StreamingEqualsDecodeOnRandomIds) {
  const Tokenizer* tok = SharedQwen("qwen2.5");
  if (tok == nullptr) GTEST_SKIP() << "missing ../shared/tokenizers/qwen2.5";
  std::mt19937 rng(99);
  const std::vector<int32_t> interesting = {151643, 151644, 151645, 220, 198, 9707};
  for (int round = 0; round < 2000; ++round) {
    std::vector<int32_t> ids(1 + rng() % 10);
    for (int32_t& id : ids) {
      const uint32_t r = rng();
      // Mostly single-byte tokens (ids 0..255 hold the byte alphabet), some specials, some words.
      id = r % 3 == 0   ? static_cast<int32_t>(r % 256)
           : r % 3 == 1 ? interesting[r % interesting.size()]
                        : static_cast<int32_t>(r % tok->vocab_size());
    }
    for (bool skip : {false, true}) {
      EXPECT_EQ(StreamDecode(*tok, ids, skip), *tok->Decode(ids, skip)) << "round " << round;
    }
  }
}

// The GGUF gpt2 path on the real Qwen2.5 vocabulary: the same cases must come out.
TEST(QwenTokenizerTest, GgufGpt2VocabularyMatchesTokenizerJson) {
  const auto dir = SharedDir() / "tokenizers" / "qwen2.5";
  SKIP_IF_MISSING(dir / "tokenizer.json");
  const json root = ReadJsonFile(dir / "tokenizer.json");
  GgufVocab vocab;
  vocab.model = "gpt2";
  vocab.pre = "qwen2";
  vocab.add_bos = false;
  const json& model_vocab = root["model"]["vocab"];
  vocab.tokens.resize(model_vocab.size() + root["added_tokens"].size());
  vocab.token_types.assign(vocab.tokens.size(), static_cast<int32_t>(GgufTokenType::kNormal));
  for (const auto& [piece, id] : model_vocab.items()) vocab.tokens[id.get<int32_t>()] = piece;
  for (const json& added : root["added_tokens"]) {
    const int32_t id = added["id"].get<int32_t>();
    vocab.tokens[id] = added["content"].get<std::string>();
    vocab.token_types[id] = static_cast<int32_t>(
        added["special"].get<bool>() ? GgufTokenType::kControl : GgufTokenType::kUserDefined);
  }
  for (const json& m : root["model"]["merges"]) vocab.merges.push_back(m.get<std::string>());
  vocab.eos_id = 151645;
  auto tok = CreateTokenizerFromGgufVocab(vocab);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  CheckCases(**tok, ReadJsonFile(dir / "cases.json")["cases"], "qwen2.5 via GGUF");
  EXPECT_EQ((*tok)->eos_token(), "<|im_end|>");
}

// ---- stories260K: SentencePiece-style BPE with byte fallback ----------------------------------

std::vector<int32_t> ReadIds(const std::filesystem::path& path) {
  std::istringstream in(ReadText(path));
  std::vector<int32_t> ids;
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

// llama2.c's tok512.bin (the same SentencePiece model as the GGUF): pieces and scores.
GgufVocab ReadLlama2cVocab(const std::filesystem::path& path, int vocab_size) {
  const std::string bytes = ReadText(path);
  GgufVocab vocab;
  vocab.model = "llama";
  size_t pos = 4;  // max_token_length
  for (int id = 0; id < vocab_size && pos + 8 <= bytes.size(); ++id) {
    float score;
    int32_t len;
    std::memcpy(&score, bytes.data() + pos, 4);
    std::memcpy(&len, bytes.data() + pos + 4, 4);
    pos += 8;
    std::string piece = bytes.substr(pos, len);
    pos += len;
    // llama2.c exports "▁" as a space; GGUF keeps SentencePiece's "▁".
    for (size_t at; (at = piece.find(' ')) != std::string::npos;)
      piece.replace(at, 1, "\xE2\x96\x81");
    GgufTokenType type = GgufTokenType::kNormal;
    if (id == 0) {
      type = GgufTokenType::kUnknown;
    } else if (id <= 2) {
      type = GgufTokenType::kControl;
      piece = id == 1 ? "<s>" : "</s>";  // llama2.c writes "\n<s>\n"
    } else if (piece.size() == 6 && piece.starts_with("<0x")) {
      type = GgufTokenType::kByte;
    }
    vocab.tokens.push_back(piece);
    vocab.scores.push_back(score);
    vocab.token_types.push_back(static_cast<int32_t>(type));
  }
  vocab.unk_id = 0;
  vocab.bos_id = 1;
  vocab.eos_id = 2;
  vocab.add_bos = true;
  return vocab;
}

class StoriesTokenizerTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    dir_ = SharedDir() / "models" / "stories260K";
    if (!std::filesystem::exists(dir_ / "hf" / "tokenizer.json")) {
      GTEST_SKIP() << "missing " << (dir_ / "hf" / "tokenizer.json").string();
    }
    if (GetParam()) {
      auto tok = CreateTokenizerFromGgufVocab(ReadLlama2cVocab(dir_ / "tok512.bin", 512));
      ASSERT_TRUE(tok.ok()) << tok.status().ToString();
      tok_ = std::move(tok).value();
    } else {
      tok_ = LoadOrSkip(dir_ / "hf");
    }
    ASSERT_NE(tok_, nullptr);
  }
  std::filesystem::path dir_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_P(StoriesTokenizerTest, DecodesGreedyReference) {
  const std::vector<int32_t> ids = ReadIds(dir_ / "greedy256.ids");
  ASSERT_EQ(ids.size(), 256u);
  std::string expected = ReadText(dir_ / "greedy256.txt");
  ASSERT_TRUE(expected.ends_with("\n"));
  expected.pop_back();  // the file ends with a newline the ids do not produce
  EXPECT_EQ(*tok_->Decode(ids, false), expected);
  EXPECT_EQ(StreamDecode(*tok_, ids, false), expected);
  // With BOS in front: skipped, or shown as "<s>" followed by the (unstripped) first space.
  std::vector<int32_t> with_bos = ids;
  with_bos.insert(with_bos.begin(), 1);
  EXPECT_EQ(*tok_->Decode(with_bos, true), expected);
  EXPECT_EQ(*tok_->Decode(with_bos, false), "<s> " + expected);
  EXPECT_EQ(StreamDecode(*tok_, with_bos, false), "<s> " + expected);
}

TEST_P(StoriesTokenizerTest, EncodesFirstSentenceAsGreedyIds) {
  const std::vector<int32_t> ids = ReadIds(dir_ / "greedy256.ids");
  const std::string sentence = "Once upon a time, there was a little girl named Lily.";
  const std::vector<int32_t> encoded = tok_->Encode(sentence, false);
  ASSERT_LE(encoded.size(), ids.size());
  EXPECT_EQ(encoded, std::vector<int32_t>(ids.begin(), ids.begin() + encoded.size()));
  std::vector<int32_t> with_bos = tok_->Encode(sentence, true);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos.front(), 1);
  EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()), encoded);
}

TEST_P(StoriesTokenizerTest, MatchesHfTokenizers) {
  CheckCases(*tok_, ReadJsonFile(TestDataDir() / "stories260K_cases.json")["cases"],
             GetParam() ? "stories260K (GGUF-style vocab)" : "stories260K (tokenizer.json)");
  EXPECT_EQ(tok_->bos_token(), "<s>");
  EXPECT_EQ(tok_->eos_token(), "</s>");
  EXPECT_EQ(tok_->bos_token_id(), 1);
  EXPECT_EQ(tok_->eos_token_id(), 2);
  EXPECT_EQ(tok_->vocab_size(), 512);
  EXPECT_EQ(tok_->TokenBytes(tok_->PieceToId("<0x0A>")), "\n");
  EXPECT_EQ(tok_->TokenBytes(403), " Once");
  EXPECT_EQ(tok_->IdToPiece(403), "\xE2\x96\x81Once");
}

TEST_P(StoriesTokenizerTest, StreamsByteFallbackCharacters) {
  // 中 and é are not in the 512-piece vocabulary: they come out as <0xXX> runs.
  const std::string text = "a 中文 café 😀 b";
  const std::vector<int32_t> ids = tok_->Encode(text, false);
  EXPECT_EQ(*tok_->Decode(ids, false), text);
  auto stream = tok_->NewDetokenizer(false);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = stream->Push(id);
    EXPECT_TRUE(tokenizer::IsValidUtf8(piece));
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << "premature U+FFFD";
    streamed += piece;
  }
  streamed += stream->Flush();
  EXPECT_EQ(streamed, text);
  // A lone continuation run: HF's ByteFallback gives one U+FFFD per byte; streaming agrees.
  const std::vector<int32_t> broken = {tok_->PieceToId("<0xE4>"), tok_->PieceToId("<0xB8>"), 410};
  const std::string expected = "\xEF\xBF\xBD\xEF\xBF\xBD ";
  EXPECT_EQ(*tok_->Decode(broken, false), expected);
  EXPECT_EQ(StreamDecode(*tok_, broken, false), expected);
  const std::vector<int32_t> tail = {403, tok_->PieceToId("<0xE4>")};
  EXPECT_EQ(StreamDecode(*tok_, tail, false), *tok_->Decode(tail, false));
}

INSTANTIATE_TEST_SUITE_P(Sources, StoriesTokenizerTest, ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? "GgufLlama" : "TokenizerJson";
                         });

// ---- Llama-3-style byte-level tokenizer (synthetic file, HF tokenizers outputs) --------------

TEST(Llama3StyleTokenizerTest, MatchesHfTokenizers) {
  auto tok = LoadOrSkip(TestDataDir() / "llama3_style_tokenizer.json");
  ASSERT_NE(tok, nullptr);
  CheckCases(*tok, ReadJsonFile(TestDataDir() / "llama3_style_cases.json")["cases"],
             "llama3-style");
  // No tokenizer_config.json: BOS is what the post-processor prepends; no EOS.
  EXPECT_EQ(tok->bos_token(), "<|begin_of_text|>");
  EXPECT_EQ(tok->eos_token_id(), -1);
  EXPECT_FALSE(tok->has_chat_template());
  EXPECT_FALSE(tok->IsSpecial(tok->PieceToId("<tool>")));
  EXPECT_TRUE(tok->IsSpecial(tok->PieceToId("<|eot_id|>")));
}

// ---- errors -----------------------------------------------------------------------------------

TEST(TokenizerErrorsTest, BadFilesAreStatuses) {
  EXPECT_EQ(CreateTokenizerFromJson("/nonexistent/dir").status().code(), StatusCode::kNotFound);
  const auto dir = std::filesystem::temp_directory_path() / "kiln_tokenizer_errors_test";
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& text) {
    std::ofstream(dir / "tokenizer.json") << text;
    return CreateTokenizerFromJson(dir.string()).status();
  };
  EXPECT_EQ(write("{not json").code(), StatusCode::kDataLoss);
  EXPECT_EQ(write("[]").code(), StatusCode::kDataLoss);
  EXPECT_EQ(write(R"({"model": {"type": "Unigram", "vocab": []}})").code(),
            StatusCode::kUnimplemented);
  EXPECT_EQ(write(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})").code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})").code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                      "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}}})")
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                      "normalizer": {"type": "BertNormalizer"}})")
                .code(),
            StatusCode::kUnimplemented);
  EXPECT_EQ(
      write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "byte_fallback": "yes"},
                      "added_tokens": [{"id": "zero", "content": "x"}]})")
          .code(),
      StatusCode::kDataLoss);
  // A minimal valid one.
  EXPECT_TRUE(
      write(
          R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}})")
          .ok());
  auto tok = CreateTokenizerFromJson((dir / "tokenizer.json").string());
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ((*tok)->Encode("abab", false),
            (std::vector<int32_t>{2, 2}));  // no pre-tokenizer: one word
  EXPECT_EQ(*(*tok)->Decode(std::vector<int32_t>{2, 0}, false),
            "ab a");  // no decoder: joined by spaces
  std::filesystem::remove_all(dir);

  GgufVocab empty;
  EXPECT_EQ(CreateTokenizerFromGgufVocab(empty).status().code(), StatusCode::kDataLoss);
  GgufVocab bad_scores;
  bad_scores.model = "llama";
  bad_scores.tokens = {"a", "b"};
  bad_scores.scores = {1.0f};
  EXPECT_EQ(CreateTokenizerFromGgufVocab(bad_scores).status().code(), StatusCode::kDataLoss);
  GgufVocab unknown_model;
  unknown_model.model = "bert";
  unknown_model.tokens = {"a"};
  unknown_model.add_bos = false;
  EXPECT_EQ(CreateTokenizerFromGgufVocab(unknown_model).status().code(),
            StatusCode::kUnimplemented);
  GgufVocab bad_pre = unknown_model;
  bad_pre.model = "gpt2";
  bad_pre.pre = "some-new-model";
  EXPECT_EQ(CreateTokenizerFromGgufVocab(bad_pre).status().code(), StatusCode::kUnimplemented);
  GgufVocab bad_bos = unknown_model;
  bad_bos.model = "gpt2";
  bad_bos.bos_id = 7;
  EXPECT_EQ(CreateTokenizerFromGgufVocab(bad_bos).status().code(), StatusCode::kDataLoss);
}

TEST(TokenizerErrorsTest, InvalidUtf8InputIsEncodedLossily) {
  const auto dir = SharedDir() / "tokenizers" / "qwen2.5";
  SKIP_IF_MISSING(dir / "tokenizer.json");
  const Tokenizer* tok = SharedQwen("qwen2.5");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("a\xFF"
                        "b",
                        false),
            tok->Encode("a\xEF\xBF\xBD"
                        "b",
                        false));
}

}  // namespace
}  // namespace kiln
