// Matcher mechanics, regex / choice / GBNF constraints, and mask ⇔ byte-level acceptance
// consistency on a small vocabulary whose multi-byte tokens straddle grammar boundaries.
#include <gtest/gtest.h>

#include <random>

#include "structured/gbnf.h"
#include "structured/regex.h"
#include "structured/structured_output.h"
#include "structured/test_vocab.h"
#include "structured/vocab_from_tokenizer.h"

namespace kiln::structured {
namespace {

const std::vector<std::string>& ExtraTokens() {
  static const std::vector<std::string> t = {
      "\",",  "\":",     "\"}",   "{\"", "true", "null",          ", \"",     "12",   "3.", "ab",
      "\n  ", "}]",      "],",    "\"a", "abc",  "\": \"",        "\"}}",     "-1",   "e+", "\\u00",
      "\\n",  "yes",     "no",    "[\"", "00",   "\u00e9t\u00e9", "\xe2\x82", "\xac", " ",  "  ",
      "\":{", "\"},{\"", "2024-", "01-", "T12:"};
  return t;
}

GrammarCompiler& Compiler() {
  static std::unique_ptr<GrammarCompiler> c =
      std::move(GrammarCompiler::Create(testing::TinyVocab(ExtraTokens())).value());
  return *c;
}

ResponseFormat Format(ResponseFormat::Type type, std::string text) {
  ResponseFormat f;
  f.type = type;
  if (type == ResponseFormat::Type::kRegex) f.regex = text;
  if (type == ResponseFormat::Type::kGrammar) f.grammar = text;
  if (type == ResponseFormat::Type::kJsonSchema) f.json_schema = text;
  return f;
}

// Whole-string acceptance: the bytes are a viable prefix and the output may end there.
bool Full(const ResponseFormat& f, std::string_view s) {
  auto g = Compiler().Compile(f);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  if (!g.ok()) return false;
  GrammarMatcher m(*g);
  return m.AcceptBytes(s) && m.CanTerminate();
}

bool RegexFull(const std::string& re, std::string_view s) {
  return Full(Format(ResponseFormat::Type::kRegex, re), s);
}

TEST(RegexTest, LiteralsClassesQuantifiers) {
  EXPECT_TRUE(RegexFull("abc", "abc"));
  EXPECT_FALSE(RegexFull("abc", "ab"));
  EXPECT_FALSE(RegexFull("abc", "abcd"));
  EXPECT_TRUE(RegexFull("[a-c]+x?", "abcab"));
  EXPECT_TRUE(RegexFull("[a-c]+x?", "ax"));
  EXPECT_FALSE(RegexFull("[a-c]+x?", "x"));
  EXPECT_TRUE(RegexFull("\\d{3}-\\d{2,4}", "123-4567"));
  EXPECT_FALSE(RegexFull("\\d{3}-\\d{2,4}", "123-45678"));
  EXPECT_FALSE(RegexFull("\\d{3}-\\d{2,4}", "12-45"));
  EXPECT_TRUE(RegexFull("a{2,}", "aaaaa"));
  EXPECT_FALSE(RegexFull("a{2,}", "a"));
  EXPECT_TRUE(RegexFull("(cat|dog)s?", "dogs"));
  EXPECT_FALSE(RegexFull("(cat|dog)s?", "cow"));
  EXPECT_TRUE(RegexFull("(?:ab)*c", "ababc"));
  EXPECT_TRUE(RegexFull("\\w+\\s\\w+", "hello world"));
  EXPECT_FALSE(RegexFull("\\w+\\s\\w+", "hello-world"));
  EXPECT_TRUE(RegexFull("[^0-9]+", "abc"));
  EXPECT_FALSE(RegexFull("[^0-9]+", "a1"));
  EXPECT_TRUE(RegexFull("^yes|no$", "no"));
  EXPECT_TRUE(RegexFull("a.c",
                        "a\xc3\xa9"
                        "c"));  // '.' is one code point (UTF-8)
  EXPECT_FALSE(RegexFull("a.c", "a\nc"));
  EXPECT_TRUE(RegexFull("\\.\\*\\[", ".*["));
  EXPECT_TRUE(RegexFull("[\\u00e0-\\u00ff]x", "\xc3\xa9x"));
  EXPECT_TRUE(RegexFull("\\x41\\u0042", "AB"));
  EXPECT_TRUE(RegexFull("(?<year>\\d{4})", "2024"));
}

TEST(RegexTest, UnsupportedConstructsAreErrors) {
  for (const char* re :
       {"(?=a)b", "(a)\\1", "a\\bb", "a^b", "(ab", "ab)", "[a-", "*a", "a{3,2}", "\\p{L}"}) {
    auto r = ParseRegex(re, RegexMode::kRaw);
    EXPECT_FALSE(r.ok()) << re;
    if (!r.ok()) EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(RegexTest, JsonStringModeEscapes) {
  // A '"' in the pattern must be produced escaped inside a JSON string.
  auto g = Compiler().Compile(
      Format(ResponseFormat::Type::kJsonSchema, R"({"type":"string","pattern":"^a\"b\\nc$"})"));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  GrammarMatcher m(*g);
  EXPECT_TRUE(m.AcceptBytes(R"("a\"b\nc")"));
  EXPECT_TRUE(m.CanTerminate());
}

TEST(ChoiceTest, ExactlyOneOfTheChoices) {
  ResponseFormat f;
  f.type = ResponseFormat::Type::kChoice;
  f.choices = {"yes", "no", "maybe not"};
  EXPECT_TRUE(Full(f, "yes"));
  EXPECT_TRUE(Full(f, "maybe not"));
  EXPECT_FALSE(Full(f, "maybe"));
  EXPECT_FALSE(Full(f, "yess"));
  f.choices = {};
  EXPECT_FALSE(Compiler().Compile(f).ok());
}

TEST(GbnfTest, RulesAlternationRepetitionClasses) {
  const char* g = R"G(
    # a tiny arithmetic language
    root ::= expr
    expr ::= term (("+" | "-") term)*
    term ::= num | "(" expr ")"
    num  ::= [0-9]{1,3}
  )G";
  auto f = Format(ResponseFormat::Type::kGrammar, g);
  EXPECT_TRUE(Full(f, "1+2"));
  EXPECT_TRUE(Full(f, "(1+(22-333))-4"));
  EXPECT_FALSE(Full(f, "1+"));
  EXPECT_FALSE(Full(f, "1234"));
  EXPECT_FALSE(Full(f, "(1"));
  auto f2 = Format(ResponseFormat::Type::kGrammar,
                   "root ::= \"a\"? [^x-z\\n]+ \"\\x41\" . \"\\u00e9\"\n");
  EXPECT_TRUE(Full(f2, "bcA\xc3\xa9\xc3\xa9"));
  EXPECT_TRUE(Full(f2, "abcAq\xc3\xa9"));
  EXPECT_FALSE(Full(f2, "xA\xc3\xa9\xc3\xa9"));
}

TEST(GbnfTest, ErrorsNameTheProblem) {
  struct Case {
    const char* text;
    const char* needle;
  };
  for (const Case& c :
       {Case{"root ::= foo", "undefined rule 'foo'"}, Case{"start ::= \"a\"", "no 'root' rule"},
        Case{"root ::= \"a", "unterminated"}, Case{"root ::= root \"a\" | \"b\"", "left recursion"},
        Case{"root ::= x \"a\" | \"b\"\nx ::= root", "left recursion"},
        Case{"root ::= x\nx ::= x", "admits no complete output"},
        Case{"root ::= \"\\U0011FFFF\"", "not a Unicode scalar value"},
        Case{"root ::= [\\uD800-\\uDFFF]", "not a Unicode scalar value"}}) {
    auto r = Compiler().Compile(Format(ResponseFormat::Type::kGrammar, c.text));
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.needle), std::string::npos) << r.status().message();
  }
}

TEST(MatcherTest, EosOnlyWhenCompleteAndTermination) {
  ResponseFormat f;
  f.type = ResponseFormat::Type::kChoice;
  f.choices = {"ab", "abc"};
  auto g = Compiler().Compile(f);
  ASSERT_TRUE(g.ok());
  GrammarMatcher m(*g);
  const int32_t eos = Compiler().vocab().eos_token_ids()[0];
  std::vector<uint32_t> mask(m.num_mask_words());
  m.FillNextTokenBitmask(mask.data());
  EXPECT_FALSE(mask[eos >> 5] >> (eos & 31) & 1);
  EXPECT_FALSE(m.AcceptToken(eos));
  EXPECT_FALSE(m.AcceptToken('b'));
  ASSERT_TRUE(m.AcceptToken(256 + 9));  // "ab"
  EXPECT_TRUE(m.CanTerminate());
  EXPECT_FALSE(m.IsTerminated());  // "abc" may still follow
  m.FillNextTokenBitmask(mask.data());
  EXPECT_TRUE(mask[eos >> 5] >> (eos & 31) & 1);
  EXPECT_TRUE(mask['c' >> 5] >> ('c' & 31) & 1);
  EXPECT_FALSE(mask['d' >> 5] >> ('d' & 31) & 1);
  ASSERT_TRUE(m.AcceptToken('c'));
  EXPECT_TRUE(m.IsTerminated());
  m.FillNextTokenBitmask(mask.data());
  EXPECT_TRUE(mask[eos >> 5] >> (eos & 31) & 1);
  EXPECT_TRUE(m.AcceptToken(eos));
  EXPECT_TRUE(m.IsTerminated());
  EXPECT_FALSE(m.AcceptToken('a'));
  // The special (empty) token is never allowed.
  EXPECT_FALSE(m.AcceptToken(eos - 1));
}

TEST(MatcherTest, RejectedTokenLeavesStateUnchanged) {
  auto g = Compiler().Compile(Format(ResponseFormat::Type::kRegex, "a+b"));
  ASSERT_TRUE(g.ok());
  GrammarMatcher m(*g);
  EXPECT_TRUE(m.AcceptToken('a'));
  EXPECT_FALSE(m.AcceptToken('c'));
  EXPECT_TRUE(m.AcceptToken('b'));
  EXPECT_TRUE(m.IsTerminated());
}

// For random walks over several constraints, every mask bit must equal byte-level viability of
// that token from the current state (the precomputed tables and suffix checks are exact).
TEST(MatcherTest, MaskEqualsByteLevelAcceptanceOnRandomWalks) {
  std::vector<ResponseFormat> formats = {
      Format(ResponseFormat::Type::kJsonSchema,
             R"({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer",
                "minimum":-5,"maximum":120},"c":{"type":"array","items":{"type":"boolean"},
                "maxItems":3}},"required":["a"]})"),
      Format(ResponseFormat::Type::kJsonSchema,
             R"({"$defs":{"n":{"type":"object","properties":{"v":{"type":"number"},
                "next":{"anyOf":[{"$ref":"#/$defs/n"},{"type":"null"}]}},"required":["v","next"]}},
                "$ref":"#/$defs/n"})"),
      Format(ResponseFormat::Type::kJsonSchema,
             R"({"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":
                {"type":"string","format":"date"}})"),
      Format(ResponseFormat::Type::kJsonObject, ""),
      // Counted rules: lengths with escapes and multi-byte characters, a pattern with a length.
      Format(ResponseFormat::Type::kJsonSchema,
             R"({"type":"object","properties":{"s":{"type":"string","minLength":2,"maxLength":5},
                "p":{"type":"string","pattern":"^[a-c]+$","maxLength":4},
                "n":{"type":"number","minimum":0,"multipleOf":0.01}},"required":["s","p"],
                "maxProperties":2})"),
      Format(ResponseFormat::Type::kJsonSchema, R"({"type":"string","minLength":1,"maxLength":3})"),
      Format(ResponseFormat::Type::kRegex, "(ab|abc)+[0-9]{2}"),
      Format(ResponseFormat::Type::kGrammar,
             "root ::= item (\", \" item)*\nitem ::= \"\\\"\" [a-c]* \"\\\"\" | [0-9]+"),
  };
  const VocabIndex& v = Compiler().vocab();
  std::mt19937 rng(7);
  for (const auto& f : formats) {
    auto g = Compiler().Compile(f);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    for (int walk = 0; walk < 6; ++walk) {
      GrammarMatcher m(*g);
      std::vector<uint32_t> mask(m.num_mask_words());
      for (int step = 0; step < 60 && !m.IsTerminated(); ++step) {
        m.FillNextTokenBitmask(mask.data());
        std::vector<int32_t> allowed;
        for (int32_t id = 0; id < v.vocab_size(); ++id) {
          bool bit = mask[id >> 5] >> (id & 31) & 1;
          bool expect = v.is_eos(id)
                            ? m.CanTerminate()
                            : !v.token_bytes(id).empty() && m.WouldAccept(v.token_bytes(id));
          ASSERT_EQ(bit, expect) << "token " << id << " '" << v.token_bytes(id) << "' step "
                                 << step;
          if (bit) allowed.push_back(id);
        }
        ASSERT_FALSE(allowed.empty());
        int32_t pick = allowed[rng() % allowed.size()];
        ASSERT_TRUE(m.AcceptToken(pick));
      }
    }
  }
}

// Bad input never crashes or hangs: random byte soup and deep nesting into every front end give a
// Status (or a grammar), never an abort.
TEST(RobustnessTest, GarbageAndDeepNestingGiveStatuses) {
  std::mt19937 rng(11);
  const std::string alphabet = "()[]{}|*+?.^$\\\"-,:0123456789abcxyz:=#\n dux";
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    int len = rng() % 24;
    for (int k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
    (void)ParseRegex(s, RegexMode::kRaw);
    (void)GbnfToGrammar("root ::= " + s);
    ResponseFormat f = Format(ResponseFormat::Type::kJsonSchema, "{\"pattern\":\"" + s + "\"}");
    (void)Compiler().Compile(f);
  }
  std::string deep(100000, '(');
  EXPECT_FALSE(ParseRegex(deep + "a" + std::string(100000, ')'), RegexMode::kRaw).ok());
  EXPECT_FALSE(GbnfToGrammar("root ::= " + deep + "\"a\"" + std::string(100000, ')')).ok());
  EXPECT_FALSE(ParseRegex("a" + std::string(100000, '*'), RegexMode::kRaw).ok());
  std::string nested_schema;
  for (int i = 0; i < 5000; ++i) nested_schema += "{\"items\":";
  nested_schema += "{}" + std::string(5000, '}');
  EXPECT_FALSE(Compiler().Compile(Format(ResponseFormat::Type::kJsonSchema, nested_schema)).ok());
  // Too large: a 20,000+ state automaton is refused, not compiled for minutes.
  EXPECT_FALSE(Compiler().Compile(Format(ResponseFormat::Type::kRegex, "(.{1000}){1000}")).ok());
}

// A 4-token tokenizer: "a", "b", a special token and EOS.
class FakeTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view, bool) const override { return {}; }
  StatusOr<std::string> Decode(std::span<const int32_t>, bool) const override { return ""; }
  std::unique_ptr<IncrementalDetokenizer> NewDetokenizer(bool) const override { return nullptr; }
  int vocab_size() const override { return 4; }
  std::string TokenBytes(int32_t id) const override {
    return id == 0 ? "a" : id == 1 ? "b" : id == 2 ? "<tool>" : "</s>";
  }
  std::string IdToPiece(int32_t id) const override { return TokenBytes(id); }
  int32_t PieceToId(std::string_view) const override { return -1; }
  bool IsSpecial(int32_t id) const override { return id >= 2; }
  int32_t bos_token_id() const override { return -1; }
  int32_t eos_token_id() const override { return 3; }
  std::string bos_token() const override { return ""; }
  std::string eos_token() const override { return "</s>"; }
  bool has_chat_template() const override { return false; }
  StatusOr<std::string> ApplyChatTemplate(const nlohmann::ordered_json&,
                                          const ChatTemplateOptions&) const override {
    return Status::Unimplemented("none");
  }
};

TEST(VocabFromTokenizerTest, SpecialTokensNeverAllowedEosOnlyAtTheEnd) {
  FakeTokenizer tok;
  VocabInfo info = VocabInfoFromTokenizer(tok, /*vocab_size=*/40);
  EXPECT_EQ(info.vocab_size, 40);
  EXPECT_EQ(info.token_bytes[0], "a");
  EXPECT_EQ(info.token_bytes[2], "");
  EXPECT_EQ(info.eos_token_ids, std::vector<int32_t>{3});
  auto compiler = GrammarCompiler::Create(info);
  ASSERT_TRUE(compiler.ok());
  ResponseFormat f;
  f.type = ResponseFormat::Type::kRegex;
  f.regex = "(ab)+|<tool>";
  auto g = (*compiler)->Compile(f);
  ASSERT_TRUE(g.ok());
  GrammarMatcher m(*g);
  uint32_t mask[2];
  m.FillNextTokenBitmask(mask);
  EXPECT_EQ(mask[0], 1u);  // only "a": the special token's text is not emittable
  EXPECT_EQ(mask[1], 0u);
  ASSERT_TRUE(m.AcceptToken(0));
  ASSERT_TRUE(m.AcceptToken(1));
  m.FillNextTokenBitmask(mask);
  EXPECT_EQ(mask[0], (1u << 0) | (1u << 3));
}

}  // namespace
}  // namespace kiln::structured
