#include "server/openai_protocol.h"

#include <gtest/gtest.h>

namespace kiln::server {
namespace {

// A tokenizer whose token i stands for the text "<i>" (enough for rendering logprobs).
class FakeTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view, bool) const override { return {}; }
  StatusOr<std::string> Decode(std::span<const int32_t>, bool) const override {
    return std::string();
  }
  std::unique_ptr<IncrementalDetokenizer> NewDetokenizer(bool) const override { return nullptr; }
  int vocab_size() const override { return 100; }
  std::string TokenBytes(int32_t id) const override {
    if (id == 99) return "\xff";
    if (id == 98) return "\xe9\x85\xbf";  // U+917F: one character of three bytes
    if (id == 97) return "\xe5\x90";      // the first two bytes of U+5408...
    if (id == 96) return "\x88";          // ... and its last
    return "<" + std::to_string(id) + ">";
  }
  std::string IdToPiece(int32_t id) const override { return TokenBytes(id); }
  int32_t PieceToId(std::string_view) const override { return -1; }
  bool IsSpecial(int32_t) const override { return false; }
  int32_t bos_token_id() const override { return 1; }
  int32_t eos_token_id() const override { return 2; }
  std::string bos_token() const override { return "<s>"; }
  std::string eos_token() const override { return "</s>"; }
  bool has_chat_template() const override { return false; }
  StatusOr<std::string> ApplyChatTemplate(const nlohmann::ordered_json&,
                                          const ChatTemplateOptions&) const override {
    return std::string();
  }
};

std::optional<ApiError> Chat(const std::string& text, GenerateRequest* out) {
  json body;
  if (auto e = ParseJsonBody(text, &body)) return e;
  return ParseChatRequest(body, out);
}

std::optional<ApiError> Completion(const std::string& text, GenerateRequest* out) {
  json body;
  if (auto e = ParseJsonBody(text, &body)) return e;
  return ParseCompletionRequest(body, out);
}

TEST(OpenAiProtocolTest, MalformedJsonAndNonObject) {
  json body;
  auto e = ParseJsonBody("{\"model\": ", &body);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http_status, 400);
  EXPECT_NE(e->message.find("not valid JSON"), std::string::npos);
  e = ParseJsonBody("[1,2]", &body);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("JSON object"), std::string::npos);
}

// Regression (issue 18): ~120 KB of nested arrays overflowed the stack while the value was
// walked. The depth is bounded on the raw text, before parsing; brackets in strings do not count.
TEST(OpenAiProtocolTest, JsonNestingIsBoundedBeforeParsing) {
  auto nested = [](int n) { return std::string(n, '[') + std::string(n, ']'); };
  EXPECT_EQ(JsonNestingDepth("{\"a\": [[1], {\"b\": []}]}", 100), 4);
  EXPECT_EQ(JsonNestingDepth("{\"a\": \"[[[[\\\"[[\"}", 100), 1);
  EXPECT_EQ(JsonNestingDepth(nested(100000), 128), 129);  // stops counting past the limit
  json body;
  EXPECT_FALSE(ParseJsonBody("{\"x\":" + nested(kMaxJsonDepth - 1) + "}", &body));
  auto e = ParseJsonBody("{\"x\":" + nested(kMaxJsonDepth) + "}", &body);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("128 levels"), std::string::npos) << e->message;
  e = ParseJsonBody("{\"input\":" + nested(100000) + "}", &body);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http_status, 400);
}

// Regression (issue 18): wrong-typed optional fields threw from json::value() (a 500).
TEST(OpenAiProtocolTest, OptionalFieldReadersNameTheFieldAndTreatNullAsAbsent) {
  std::string s = "dflt";
  bool b = true;
  EXPECT_FALSE(ReadOptionalString(json{{"pooling", nullptr}}, "pooling", &s));
  EXPECT_EQ(s, "dflt");
  EXPECT_FALSE(ReadOptionalString(json{{"pooling", "mean"}}, "pooling", &s));
  EXPECT_EQ(s, "mean");
  auto e = ReadOptionalString(json{{"pooling", 3}}, "pooling", &s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "pooling");
  EXPECT_FALSE(ReadOptionalBool(json::object(), "return_token_strs", &b));
  EXPECT_TRUE(b);
  e = ReadOptionalBool(json{{"return_token_strs", "yes"}}, "return_token_strs", &b);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "return_token_strs");
}

// Regression: "cache_salt" was ignored (never parsed), so salted requests shared one prefix cache.
TEST(OpenAiProtocolTest, CacheSaltIsParsedOnChatAndCompletions) {
  GenerateRequest g;
  ASSERT_FALSE(Completion(R"({"prompt": "x", "cache_salt": "tenant-1"})", &g));
  EXPECT_EQ(g.cache_salt, "tenant-1");
  GenerateRequest c;
  ASSERT_FALSE(Chat(R"({"messages": [{"role": "user", "content": "x"}], "cache_salt": "t2"})", &c));
  EXPECT_EQ(c.cache_salt, "t2");
  GenerateRequest none;
  ASSERT_FALSE(Completion(R"({"prompt": "x", "cache_salt": null})", &none));
  EXPECT_EQ(none.cache_salt, "");
  for (const char* body :
       {R"({"prompt": "x", "cache_salt": 5})",
        R"({"messages": [{"role": "user", "content": "x"}], "cache_salt": []})"}) {
    GenerateRequest bad;
    auto e = std::string(body).find("messages") != std::string::npos ? Chat(body, &bad)
                                                                     : Completion(body, &bad);
    ASSERT_TRUE(e) << body;
    EXPECT_EQ(e->http_status, 400);
    EXPECT_EQ(e->param, "cache_salt");
    EXPECT_NE(e->message.find("'cache_salt' must be a string"), std::string::npos) << e->message;
  }
}

// Regression (issue 18): engine validation errors were all reported with param "prompt".
TEST(OpenAiProtocolTest, EngineErrorParamNamesTheField) {
  EXPECT_EQ(EngineErrorParam("top_p must be in (0, 1], got 0"), "top_p");
  EXPECT_EQ(EngineErrorParam("min_tokens (5) must be <= max_tokens (2)"), "min_tokens");
  EXPECT_EQ(EngineErrorParam("chosen_logprob_token_ids contains id 7"), "logprob_token_ids");
  EXPECT_EQ(EngineErrorParam("prompt (9 tokens) exceeds max_model_len (4)"), "");
  GenerateRequest g;
  auto e = Completion(R"({"prompt": "x", "top_p": 1e-50})", &g);  // 0 once rounded to float
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "top_p");
  EXPECT_FALSE(Completion(R"({"prompt": "x", "guided_regex": "a+"})", &g));
  EXPECT_EQ(g.structured_param, "guided_regex");
}

// Regression (issue 18): one request of n × prompts = 89,600 sequences filled the whole queue.
TEST(OpenAiProtocolTest, SequencesPerRequestAreCapped) {
  GenerateRequest g;
  json prompts = json::array();
  for (int i = 0; i < 700; ++i) prompts.push_back("p");
  auto e = ParseCompletionRequest(json{{"prompt", prompts}, {"n", 128}}, &g);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "n");
  EXPECT_NE(e->message.find("89600 sequences"), std::string::npos) << e->message;
  EXPECT_FALSE(ParseCompletionRequest(json{{"prompt", prompts}, {"n", 1}}, &g));
}

// Regression (issue 18): tool_choice / tools were silently ignored. Forcing a tool call needs
// tool-call parsing, which the server does not do: refused; "none" / "auto" are accepted.
TEST(OpenAiProtocolTest, ToolChoiceNeedingToolCallParsingIsRefused) {
  GenerateRequest g;
  for (const char* choice :
       {R"("required")", R"({"type": "function", "function": {"name": "f"}})"}) {
    auto e =
        Chat(std::string(R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": )") +
                 choice + "}",
             &g);
    ASSERT_TRUE(e) << choice;
    EXPECT_EQ(e->param, "tool_choice");
  }
  EXPECT_FALSE(Chat(
      R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto", "parallel_tool_calls": false})",
      &g));
}

TEST(OpenAiProtocolTest, ChatParsesSamplingAndContentParts) {
  GenerateRequest r;
  auto e = Chat(R"({"model":"m","messages":[{"role":"system","content":"be brief"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
      "temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.05,"seed":7,"n":2,
      "max_completion_tokens":12,"stop":["x","y"],"presence_penalty":0.5,
      "frequency_penalty":-0.5,"repetition_penalty":1.1,"logprobs":true,"top_logprobs":3,
      "stream":true,"stream_options":{"include_usage":true},"ignore_eos":true,
      "stop_token_ids":[5],"min_tokens":2,"skip_special_tokens":false,
      "include_stop_str_in_output":true,"user":"u1"})",
                &r);
  ASSERT_FALSE(e) << e->message;
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.messages[1]["content"], "a\nb");
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.05f);
  EXPECT_EQ(r.sampling.seed, 7u);
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.sampling.max_tokens, 12);
  EXPECT_TRUE(r.max_tokens_set);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"x", "y"}));
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.1f);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 3);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.sampling.ignore_eos);
  EXPECT_EQ(r.sampling.stop_token_ids, std::vector<int32_t>{5});
  EXPECT_EQ(r.sampling.min_tokens, 2);
  EXPECT_FALSE(r.skip_special_tokens);
  EXPECT_TRUE(r.include_stop_str_in_output);
  EXPECT_EQ(r.user, "u1");
  EXPECT_TRUE(r.chat_options.add_generation_prompt);
  EXPECT_FALSE(r.chat_options.continue_final_message);
}

TEST(OpenAiProtocolTest, ChatErrorsNameTheField) {
  struct Case {
    const char* body;
    const char* param;
    const char* needle;
  };
  const Case cases[] = {
      {R"({"model":"m"})", "messages", "required"},
      {R"({"messages":[]})", "messages", "non-empty"},
      {R"({"messages":"hi"})", "messages", "non-empty array"},
      {R"({"messages":[{"content":"x"}]})", "messages[0].role", "role"},
      {R"({"messages":[{"role":"user","content":5}]})", "messages[0].content", "string"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "messages[0].content",
       "image_url"},
      {R"({"messages":[{"role":"user","content":"x"}],"temperature":"hot"})", "temperature",
       "must be a number, got string"},
      {R"({"messages":[{"role":"user","content":"x"}],"temperature":-1})", "temperature",
       "[0, 100], got -1"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_p":0})", "top_p", "(0, 1]"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_p":1.5})", "top_p", "(0, 1]"},
      {R"({"messages":[{"role":"user","content":"x"}],"n":0})", "n", "[1, 128]"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})", "max_tokens", "[1,"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1.5})", "max_tokens", "integer"},
      {R"({"messages":[{"role":"user","content":"x"}],"presence_penalty":3})", "presence_penalty",
       "[-2, 2]"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop":[1]})", "stop", "strings"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":21,"logprobs":true})",
       "top_logprobs", "[0, 20]"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs",
       "requires"},
      {R"({"messages":[{"role":"user","content":"x"}],"stream":"yes"})", "stream", "boolean"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop_token_ids":[-1]})", "stop_token_ids",
       "non-negative"},
      {R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}})",
       "response_format", "one of"},
      {R"({"messages":[{"role":"user","content":"x"}],"logit_bias":{"5":1}})", "logit_bias",
       "not supported"},
      {R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],
          "continue_final_message":true})",
       "continue_final_message", "both be true"},
      {R"({"messages":[{"role":"user","content":"x"}],"continue_final_message":true,
          "add_generation_prompt":false})",
       "continue_final_message", "last message"},
  };
  for (const auto& c : cases) {
    GenerateRequest r;
    auto e = Chat(c.body, &r);
    ASSERT_TRUE(e) << c.body;
    EXPECT_EQ(e->http_status, 400) << c.body;
    EXPECT_EQ(e->param, c.param) << c.body;
    EXPECT_NE(e->message.find(c.needle), std::string::npos) << c.body << " → " << e->message;
  }
}

TEST(OpenAiProtocolTest, PrefillSpellings) {
  for (const char* flag : {"partial", "prefix"}) {
    GenerateRequest r;
    const std::string body = std::string(R"({"messages":[{"role":"user","content":"x"},
        {"role":"assistant","content":"Once",")") +
                             flag + "\":true}]}";
    auto e = Chat(body, &r);
    ASSERT_FALSE(e) << e->message;
    EXPECT_TRUE(r.chat_options.continue_final_message) << flag;
    EXPECT_FALSE(r.chat_options.add_generation_prompt) << flag;
  }
  GenerateRequest r;
  auto e = Chat(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"O"}],
      "continue_final_message":true,"add_generation_prompt":false})",
                &r);
  ASSERT_FALSE(e) << e->message;
  EXPECT_TRUE(r.chat_options.continue_final_message);
  // An assistant message without the flags is answered anew.
  e = Chat(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"O"}]})",
           &r);
  ASSERT_FALSE(e);
  EXPECT_FALSE(r.chat_options.continue_final_message);
  EXPECT_TRUE(r.chat_options.add_generation_prompt);
}

TEST(OpenAiProtocolTest, StructuredOutputSpellings) {
  GenerateRequest r;
  ASSERT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],
      "response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object"}}}})",
                    &r));
  EXPECT_EQ(r.sampling.response_format.type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(r.sampling.response_format.json_schema, R"({"type":"object"})");
  ASSERT_FALSE(
      Chat(R"({"messages":[{"role":"user","content":"x"}],"guided_choice":["a","b"]})", &r));
  EXPECT_EQ(r.sampling.response_format.type, ResponseFormat::Type::kChoice);
  EXPECT_EQ(r.sampling.response_format.choices, (std::vector<std::string>{"a", "b"}));
  ASSERT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],"guided_regex":"[0-9]+"})", &r));
  EXPECT_EQ(r.sampling.response_format.type, ResponseFormat::Type::kRegex);
  ASSERT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],
      "structured_outputs":{"json":"{\"type\":\"integer\"}"}})",
                    &r));
  EXPECT_EQ(r.sampling.response_format.type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(r.sampling.response_format.json_schema, R"({"type":"integer"})");
  ASSERT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],
      "response_format":{"type":"json_object"}})",
                    &r));
  EXPECT_EQ(r.sampling.response_format.type, ResponseFormat::Type::kJsonObject);
  auto e = Chat(R"({"messages":[{"role":"user","content":"x"}],"guided_regex":"a",
      "guided_choice":["b"]})",
                &r);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("only one"), std::string::npos);
}

TEST(OpenAiProtocolTest, CompletionPromptShapes) {
  GenerateRequest r;
  ASSERT_FALSE(Completion(R"({"prompt":"hello"})", &r));
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_TRUE(r.prompts[0].is_text);
  EXPECT_EQ(r.sampling.max_tokens, 16);
  EXPECT_TRUE(r.add_special_tokens);
  ASSERT_FALSE(Completion(R"({"prompt":["a","b"],"max_tokens":3,"echo":true})", &r));
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].text, "b");
  EXPECT_TRUE(r.echo);
  ASSERT_FALSE(Completion(R"({"prompt":[1,2,3]})", &r));
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].token_ids, (std::vector<int32_t>{1, 2, 3}));
  ASSERT_FALSE(Completion(R"({"prompt":[[1,2],[3]],"logprobs":2})", &r));
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].token_ids, std::vector<int32_t>{3});
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 2);
  ASSERT_FALSE(Completion(R"({"prompt":"x","max_tokens":null})", &r));
  EXPECT_FALSE(r.max_tokens_set);

  for (const char* bad :
       {R"({"prompt":5})", R"({"prompt":[]})", R"({"prompt":["a",1]})", R"({"prompt":[1,"a"]})",
        R"({"prompt":[[1],[]]})", R"({"prompt":[-1]})", R"({"prompt":[{"a":1}]})", R"({})"}) {
    auto e = Completion(bad, &r);
    ASSERT_TRUE(e) << bad;
    EXPECT_EQ(e->param, "prompt") << bad;
  }
  auto e = Completion(R"({"prompt":"x","logprobs":21})", &r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "logprobs");
}

// Prompt-length checks moved with the generation logic: generation_test.cc
// (GeneratorTest.PromptLengthChecks) asserts what this test asserted.
TEST(OpenAiProtocolTest, VocabularyChecks) {
  auto e = CheckTokenIds({1, 2, 100}, 100, "prompt");
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("token id 100 is outside the vocabulary (size 100)"),
            std::string::npos);
  EXPECT_FALSE(CheckTokenIds({0, 99}, 100, "prompt"));
}

TEST(OpenAiProtocolTest, RendersChatResponseWithLogprobsAndUsage) {
  FakeTokenizer tok;
  GenerateRequest r;
  ASSERT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,
      "top_logprobs":1})",
                    &r));
  ChoiceResult c;
  c.text = "hi";
  c.finish_reason = "stop";
  PositionLogprobs p;
  p.chosen = {7, -0.5f};
  p.top = {{7, -0.5f}, {8, -1.5f}};
  c.logprobs.push_back(p);
  const std::string text = RenderChatResponse({"chatcmpl-1", 42, "m"}, r, {c}, {10, 1, 4}, tok);
  const json j = json::parse(text);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["total_tokens"], 11);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  const json& lp = j["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(lp["token"], "<7>");
  EXPECT_FLOAT_EQ(lp["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(lp["bytes"], json::array({'<', '7', '>'}));
  ASSERT_EQ(lp["top_logprobs"].size(), 1u);  // capped at top_logprobs
}

TEST(OpenAiProtocolTest, RendersCompletionLogprobsShape) {
  FakeTokenizer tok;
  PositionLogprobs a, b;
  a.chosen = {3, -0.1f};
  a.top = {{3, -0.1f}, {4, -2.0f}};
  b.chosen = {99, -0.2f};  // invalid UTF-8 bytes must not break JSON output
  b.top = {{5, -0.05f}};
  const json j = RenderCompletionLogprobs({a, b}, tok, 1, 10);
  EXPECT_EQ(j["tokens"][0], "<3>");
  EXPECT_EQ(j["text_offset"], json::array({10, 13}));
  EXPECT_EQ(j["top_logprobs"][0].size(), 1u);
  EXPECT_EQ(j["top_logprobs"][1].size(), 2u);                      // top-1 plus the chosen token
  EXPECT_NE(DumpJson(j).find("\xEF\xBF\xBD"), std::string::npos);  // U+FFFD replacement
}

// OpenAI's text_offset counts characters (code points), not bytes: a 3-byte character advances it
// by 1; a character split over two tokens by 1 in all.
TEST(OpenAiProtocolTest, CompletionTextOffsetCountsCharacters) {
  FakeTokenizer tok;
  std::vector<PositionLogprobs> positions(5);
  const int32_t ids[] = {98, 3, 97, 96, 4};
  for (int i = 0; i < 5; ++i) positions[i].chosen = {ids[i], -0.5f};
  const json j = RenderCompletionLogprobs(positions, tok, 0, 2);
  EXPECT_EQ(j["text_offset"], json::array({2, 3, 6, 7, 7}));
}

// vLLM fields kiln does not implement are refused naming the field (never accepted and ignored);
// their no-op values pass. priority and chat echo are read. prompt_logprobs 0 is not a no-op (vLLM
// returns the prompt tokens' own logprobs): refused too (echo + logprobs does that).
TEST(OpenAiProtocolTest, UnimplementedVllmFieldsAreRefusedNotIgnored) {
  GenerateRequest r;
  const std::string base = R"({"prompt":"x",)";
  for (const char* field :
       {R"("allowed_token_ids":[5])", R"("bad_words":["a"])", R"("prompt_logprobs":1)",
        R"("prompt_logprobs":0)", R"("truncate_prompt_tokens":2)", R"("use_beam_search":true)",
        R"("return_tokens_as_token_ids":true)", R"("spaces_between_special_tokens":false)",
        R"("stream_options":{"include_usage":true})", R"("return_token_ids":true)",
        R"("guided_whitespace_pattern":" ")", R"("request_id":"abc")",
        R"("functions":[{"name":"f","parameters":{}}])", R"("function_call":"auto")",
        R"("audio":{"voice":"x"})", R"("prediction":{"type":"content","content":"x"})",
        R"("modalities":["text","audio"])"}) {
    auto e = Completion(base + field + "}", &r);
    ASSERT_TRUE(e) << field;
    EXPECT_EQ(e->http_status, 400) << field;
    const std::string name = std::string(field).substr(1, std::string(field).find('"', 1) - 1);
    EXPECT_EQ(e->param, name) << field;
  }
  for (const char* field :
       {R"("allowed_token_ids":[])", R"("bad_words":null)", R"("prompt_logprobs":null)",
        R"("return_token_ids":false)", R"("functions":[])", R"("modalities":["text"])",
        R"("stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":false})",
        R"("use_beam_search":false)", R"("spaces_between_special_tokens":true)",
        R"("stream":true,"stream_options":{"include_usage":true})", R"("priority":-5)"}) {
    EXPECT_FALSE(Completion(base + field + "}", &r)) << field;
  }
  // stream_options keys other than include_usage would be ignored: refused.
  auto so = Completion(
      R"({"prompt":"x","stream":true,"stream_options":{"continuous_usage_stats":true}})", &r);
  ASSERT_TRUE(so);
  EXPECT_NE(so->message.find("continuous_usage_stats"), std::string::npos) << so->message;
  // Chat: max_tokens is checked also when max_completion_tokens is given (which wins).
  auto mt = Chat(R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":2,
                   "max_tokens":"x"})",
                 &r);
  ASSERT_TRUE(mt);
  EXPECT_EQ(mt->param, "max_tokens");
  ASSERT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":2,
                      "max_tokens":7})",
                    &r));
  EXPECT_EQ(r.sampling.max_tokens, 2);
  ASSERT_FALSE(Completion(R"({"prompt":"x","priority":-5})", &r));
  EXPECT_EQ(r.priority, -5);
  EXPECT_TRUE(Completion(R"({"prompt":"x","priority":"high"})", &r));
  ASSERT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],"echo":true})", &r));
  EXPECT_TRUE(r.echo);
}

TEST(OpenAiProtocolTest, StreamChunksAndSse) {
  FakeTokenizer tok;
  GenerateRequest r;
  ASSERT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],"stream":true,
      "stream_options":{"include_usage":true}})",
                    &r));
  const ResponseMeta meta{"chatcmpl-9", 1, "m"};
  json first = RenderStreamChunk(meta, r, 0, true, "", {}, 0, "", tok);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "");
  EXPECT_TRUE(first["usage"].is_null());
  json last = RenderStreamChunk(meta, r, 0, false, "", {}, 0, "length", tok);
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  json usage = RenderUsageChunk(meta, r, {3, 4, 0});
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 7);
  EXPECT_EQ(SseEvent(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(SseDone(), "data: [DONE]\n\n");
}

TEST(ApiErrorTest, StatusMappingAndShape) {
  EXPECT_EQ(ApiError::FromStatus(Status::InvalidArgument("x")).http_status, 400);
  EXPECT_EQ(ApiError::FromStatus(Status::OutOfRange("x")).http_status, 400);
  EXPECT_EQ(ApiError::FromStatus(Status::Unimplemented("x")).http_status, 400);
  EXPECT_EQ(ApiError::FromStatus(Status::NotFound("x")).http_status, 404);
  EXPECT_EQ(ApiError::FromStatus(Status::Unauthenticated("x")).http_status, 401);
  const ApiError busy = ApiError::FromStatus(Status::ResourceExhausted("queue full"));
  EXPECT_EQ(busy.http_status, 503);
  EXPECT_GT(busy.retry_after_s, 0);
  EXPECT_EQ(ApiError::FromStatus(Status::Internal("x")).http_status, 500);
  const json j = json::parse(ApiError::BadRequest("bad", "temperature").ToJson());
  EXPECT_EQ(j["error"]["message"], "bad");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "temperature");
  EXPECT_TRUE(j["error"]["code"].is_null());
}

}  // namespace
}  // namespace kiln::server
