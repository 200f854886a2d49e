// Unit tests of the tokenizer's parts: UTF-8 repair (Rust from_utf8_lossy semantics), NFC with its
// fast paths, the Oniguruma-compatible \s, the byte-level alphabet, added-token matching, a
// Metaspace tokenizer.json (HF outputs in testdata/), and concurrent use of one Tokenizer.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <thread>

#include "tokenizer/added_token_matcher.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer_factory.h"
#include "tokenizer/tokenizer_test_util.h"
#include "tokenizer/utf8.h"

namespace kiln::tokenizer {
namespace {

using testing::ReadJsonFile;
using testing::StreamDecode;
using testing::TestDataDir;

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, LossyReplacesEachMaximalInvalidSubpart) {
  EXPECT_EQ(Utf8Lossy("abc"), "abc");
  EXPECT_EQ(Utf8Lossy("\xE4\xB8\xAD"), "\xE4\xB8\xAD");
  EXPECT_EQ(Utf8Lossy("\xE4\xB8"), kFffd);  // truncated: one
  EXPECT_EQ(Utf8Lossy("a\xC3"), "a" + kFffd);
  EXPECT_EQ(Utf8Lossy("\xF0\x80\x80"), kFffd + kFffd + kFffd);  // bad second byte
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // surrogate
  EXPECT_EQ(Utf8Lossy("\xC0\xAF"), kFffd + kFffd);              // overlong
  EXPECT_EQ(Utf8Lossy("\xE4\xB8"
                      "a"),
            kFffd + "a");
  EXPECT_EQ(Utf8Lossy("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // > U+10FFFF
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80 ok"));
  EXPECT_FALSE(IsValidUtf8("12345678\xFF"));
  EXPECT_TRUE(EndsWithIncompleteUtf8("a\xF0\x9F\x98"));
  EXPECT_FALSE(EndsWithIncompleteUtf8("a\xF0\x9F\x98\x80"));
  EXPECT_FALSE(EndsWithIncompleteUtf8("\xE4\x41"));
}

TEST(NormalizerTest, NfcComposesAcrossFastPathBoundaries) {
  std::string out;
  auto nfc = [&](std::string_view in) {
    NormalizeUnicode(in, UnicodeForm::kNfc, &out);
    return out;
  };
  EXPECT_EQ(nfc("e\xCC\x81"), "\xC3\xA9");  // e + U+0301 → é
  EXPECT_EQ(nfc("\xE4\xB8\xAD"
                "e\xCC\x81"
                "\xE4\xB8\xAD"),
            "\xE4\xB8\xAD\xC3\xA9\xE4\xB8\xAD");
  EXPECT_EQ(nfc("\xEA\xB0\x80\xE1\x86\xA8"), "\xEA\xB0\x81");  // 가 + ᆨ → 각
  EXPECT_EQ(nfc("\xE3\x81\x8B\xE3\x82\x99"), "\xE3\x81\x8C");  // か + ゙ → が
  EXPECT_EQ(nfc("\xE2\x84\xAB"), "\xC3\x85");                  // Å (U+212B) → Å
  EXPECT_EQ(nfc("plain ascii"), "plain ascii");
  EXPECT_EQ(nfc("\xEF\xBC\x8C\xE4\xB8\xAD"), "\xEF\xBC\x8C\xE4\xB8\xAD");  // ，中 unchanged
  NormalizeUnicode("\xEF\xAC\x81", UnicodeForm::kNfkc, &out);              // ﬁ → fi
  EXPECT_EQ(out, "fi");
}

TEST(NormalizerTest, JsonStepsApplyInOrder) {
  auto normalizer =
      Normalizer::FromJson(nlohmann::json::parse(R"({"type": "Sequence", "normalizers": [
      {"type": "Strip", "strip_left": true, "strip_right": true},
      {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
      {"type": "Lowercase"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "_"},
      {"type": "Prepend", "prepend": ">"}]})"));
  ASSERT_TRUE(normalizer.ok()) << normalizer.status().ToString();
  std::string out;
  normalizer->Apply("  Hello \t\n WORLD ÄÖ \u3000", &out);
  EXPECT_EQ(out, ">hello_world_äö");
  normalizer->Apply("", &out);
  EXPECT_EQ(out, "");  // Prepend leaves empty text alone
  EXPECT_EQ(Normalizer::FromJson(nlohmann::json::parse(R"({"type": "Sequence"})")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Normalizer::FromJson(nlohmann::json::parse(R"({"type": "Precompiled"})")).status().code(),
      StatusCode::kUnimplemented);
}

TEST(RegexTest, WhitespaceIncludesNextLineAsInOniguruma) {
  EXPECT_EQ(OnigurumaCompatiblePattern(R"(\s+(?!\S)|[^\s\p{L}])"),
            R"([\s\x{85}]+(?![^\s\x{85}])|[^\s\x{85}\p{L}])");
  auto regex = Regex::Compile(R"(\s+)");
  ASSERT_TRUE(regex.ok());
  std::vector<MatchSpan> matches;
  ASSERT_TRUE((*regex)->FindAll("a\xC2\x85 b", &matches).ok());
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_EQ(matches[0].begin, 1u);
  EXPECT_EQ(matches[0].end, 4u);
  EXPECT_EQ(Regex::Compile("(unclosed").status().code(), StatusCode::kInvalidArgument);
}

TEST(ByteLevelTest, AlphabetRoundTrips) {
  EXPECT_EQ(ByteToUnicodeChar(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(ByteToUnicodeChar('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(ByteToUnicodeChar('a'), "a");
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back;
  ASSERT_TRUE(ByteLevelToBytes(BytesToByteLevel(all), &back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(ByteLevelToBytes("\xE4\xB8\xAD", &back));  // 中 is not in the alphabet
}

TEST(AddedTokenMatcherTest, LeftmostLongestWithStrip) {
  std::vector<AddedToken> tokens(3);
  tokens[0].id = 10;
  tokens[0].content = "<a>";
  tokens[1].id = 11;
  tokens[1].content = "<a><b>";
  tokens[2].id = 12;
  tokens[2].content = "[x]";
  tokens[2].lstrip = tokens[2].rstrip = true;
  AddedTokenMatcher matcher(tokens);
  std::vector<TextSegment> segments;
  matcher.Split("q<a><b>r<a>  [x]\t s", &segments);
  const std::vector<std::tuple<size_t, size_t, int32_t>> expected = {
      {0, 1, -1}, {1, 7, 11}, {7, 8, -1}, {8, 11, 10}, {11, 18, 12}, {18, 19, -1}};
  ASSERT_EQ(segments.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(std::make_tuple(segments[i].begin, segments[i].end, segments[i].token_id),
              expected[i])
        << i;
  }
}

TEST(MetaspaceTokenizerTest, MatchesHfTokenizers) {
  auto tok = CreateTokenizerFromJson((TestDataDir() / "metaspace_tokenizer.json").string());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const auto cases = ReadJsonFile(TestDataDir() / "metaspace_cases.json")["cases"];
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const auto with_special = c["ids_special"].get<std::vector<int32_t>>();
    EXPECT_EQ((*tok)->Encode(text, false), ids) << text;
    EXPECT_EQ((*tok)->Encode(text, true), with_special) << text;
    EXPECT_EQ(*(*tok)->Decode(ids, false), c["decoded"].get<std::string>()) << text;
    EXPECT_EQ(*(*tok)->Decode(with_special, false), c["decoded_special"].get<std::string>())
        << text;
    EXPECT_EQ(*(*tok)->Decode(with_special, true), c["decoded_special_skipped"].get<std::string>());
    EXPECT_EQ(StreamDecode(**tok, with_special, false), c["decoded_special"].get<std::string>());
    EXPECT_EQ(StreamDecode(**tok, with_special, true),
              c["decoded_special_skipped"].get<std::string>());
  }
}

// tokenizer_config.json beside tokenizer.json: special-token names in the {"content": ...} form,
// named chat templates (the list form; "tool_use" is chosen when tools are given) and
// chat_template.jinja, which newer transformers write and which wins over the config's default.
TEST(TokenizerConfigTest, SpecialTokensAndNamedTemplates) {
  const auto dir = std::filesystem::temp_directory_path() / "kiln_tokenizer_config_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(TestDataDir() / "llama3_style_tokenizer.json", dir / "tokenizer.json");
  std::ofstream(dir / "tokenizer_config.json") << R"({
    "bos_token": {"content": "<|begin_of_text|>", "lstrip": false},
    "eos_token": "<|eot_id|>",
    "chat_template": [
      {"name": "default", "template": "D{{ messages | length }}{{ bos_token }}"},
      {"name": "tool_use", "template": "T{{ tools | length }}"}
    ]})";
  auto tok = CreateTokenizerFromJson(dir.string());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->bos_token(), "<|begin_of_text|>");
  EXPECT_EQ((*tok)->eos_token(), "<|eot_id|>");
  EXPECT_EQ((*tok)->eos_token_id(), (*tok)->PieceToId("<|eot_id|>"));
  EXPECT_TRUE((*tok)->has_chat_template());
  const auto messages = nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])");
  ChatTemplateOptions options;
  EXPECT_EQ(*(*tok)->ApplyChatTemplate(messages, options), "D1<|begin_of_text|>");
  options.tools = nlohmann::json::parse(R"([{"type": "function"}, {"type": "function"}])");
  EXPECT_EQ(*(*tok)->ApplyChatTemplate(messages, options), "T2");
  std::ofstream(dir / "chat_template.jinja") << "J{{ messages[0].content }}";
  auto with_file = CreateTokenizerFromJson(dir.string());
  ASSERT_TRUE(with_file.ok()) << with_file.status().ToString();
  EXPECT_EQ(*(*with_file)->ApplyChatTemplate(messages, ChatTemplateOptions()), "Jhi");
  std::filesystem::remove_all(dir);
}

// Property tests on random input (fixed seed): streaming equals the full decode for any id
// sequence, and byte-level / byte-fallback tokenizers round-trip any valid UTF-8 text.
TEST(RandomizedTest, StreamingEqualsDecodeAndTextRoundTrips) {
  std::mt19937 rng(1234);
  const std::vector<std::string> files = {"llama3_style_tokenizer.json",
                                          "metaspace_tokenizer.json"};
  std::vector<std::unique_ptr<Tokenizer>> toks;
  for (const auto& f : files) {
    auto tok = CreateTokenizerFromJson((TestDataDir() / f).string());
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    toks.push_back(std::move(tok).value());
  }
  const auto stories = testing::SharedDir() / "models" / "stories260K" / "hf";
  if (std::filesystem::exists(stories / "tokenizer.json")) {
    auto tok = CreateTokenizerFromJson(stories.string());
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    toks.push_back(std::move(tok).value());
  }
  // Characters of 1-4 bytes, spaces, newlines and special-token text.
  const std::vector<std::string> alphabet = {"a",
                                             "b",
                                             "the",
                                             " ",
                                             "  ",
                                             "\n",
                                             "'s",
                                             "1",
                                             "123",
                                             "\xC3\xA9",
                                             "\xE4\xB8\xAD",
                                             "\xE6\x96\x87",
                                             "\xF0\x9F\x98\x80",
                                             "<s>",
                                             "<|eot_id|>",
                                             "\t",
                                             "."};
  for (const auto& tok : toks) {
    const int vocab = tok->vocab_size();
    for (int round = 0; round < 300; ++round) {
      std::vector<int32_t> ids(1 + rng() % 12);
      for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
      for (bool skip : {false, true}) {
        auto full = tok->Decode(ids, skip);
        ASSERT_TRUE(full.ok());
        EXPECT_TRUE(IsValidUtf8(*full));
        EXPECT_EQ(StreamDecode(*tok, ids, skip), *full) << "round " << round << " skip " << skip;
      }
      std::string text;
      for (int k = 0, n = 1 + rng() % 10; k < n; ++k) text += alphabet[rng() % alphabet.size()];
      const std::vector<int32_t> encoded = tok->Encode(text, false);
      auto decoded = tok->Decode(encoded, false);
      ASSERT_TRUE(decoded.ok());
      EXPECT_EQ(StreamDecode(*tok, encoded, false), *decoded);
      if (tok.get() == toks[0].get()) {
        EXPECT_EQ(*decoded, text);  // byte-level: lossless
      }
    }
  }
}

// One Tokenizer, many threads (each with its own word cache): the same ids as on one thread.
TEST(ConcurrencyTest, EncodeFromManyThreads) {
  auto tok = CreateTokenizerFromJson((TestDataDir() / "llama3_style_tokenizer.json").string());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const auto cases = ReadJsonFile(TestDataDir() / "llama3_style_cases.json")["cases"];
  std::vector<std::string> texts;
  for (const auto& c : cases) texts.push_back(c["text"].get<std::string>());
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) expected.push_back((*tok)->Encode(t, true));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 200; ++round) {
        const size_t i = (round * 7 + t) % texts.size();
        if ((*tok)->Encode(texts[i], true) != expected[i]) ++mismatches;
        if (*(*tok)->Decode(expected[i], false) != *(*tok)->Decode(expected[i], false))
          ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace kiln::tokenizer
