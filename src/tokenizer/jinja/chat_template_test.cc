// ChatTemplate on real chat templates: Qwen2.5 (every case of ../shared/tokenizers/qwen2.5/
// chat_template_cases.json, rendered by HF transformers), Qwen3 (thinking, tool calls,
// reasoning_content; expected strings derived by reading the template, see the comments) and
// Llama 3.1 (the official template in testdata/, expected strings per Llama 3.1's documented
// prompt format), plus continue_final_message and error handling.
#include "tokenizer/jinja/chat_template.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace kiln {
namespace {

using nlohmann::ordered_json;

std::string SharedDir() {
  if (const char* env = std::getenv("KILN_SHARED")) return env;
  if (const char* src = std::getenv("KILN_SOURCE_DIR")) return std::string(src) + "/../shared";
  return "../shared";
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

// The chat_template string of a tokenizer_config.json; empty when the file is missing.
std::string LoadConfigTemplate(const std::string& path) {
  std::string text;
  if (!ReadFile(path, &text)) return "";
  nlohmann::json config = nlohmann::json::parse(text, nullptr, false);
  if (config.is_discarded() || !config.contains("chat_template")) return "";
  return config["chat_template"].get<std::string>();
}

ChatTemplate MustParse(const std::string& source) {
  StatusOr<ChatTemplate> t = ChatTemplate::Parse(source);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

std::string MustRender(const ChatTemplate& t, const ordered_json& messages,
                       const ChatTemplateOptions& options, const ordered_json& tools = nullptr,
                       const std::string& bos = "") {
  StatusOr<std::string> r = t.Render(messages, tools, nullptr, options, bos, "<|im_end|>");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : "";
}

const char* kWeatherTool = R"({"type": "function", "function": {"name": "get_weather",
  "description": "Get the current weather", "parameters": {"type": "object",
  "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}}})";

// ---- Qwen2.5 --------------------------------------------------------------------------------

TEST(ChatTemplateTest, Qwen25MatchesTransformersCases) {
  const std::string dir = SharedDir() + "/tokenizers/qwen2.5";
  std::string source = LoadConfigTemplate(dir + "/tokenizer_config.json");
  std::string cases_text;
  if (source.empty() || !ReadFile(dir + "/chat_template_cases.json", &cases_text)) {
    GTEST_SKIP() << "missing " << dir << "/tokenizer_config.json or chat_template_cases.json";
  }
  ChatTemplate tmpl = MustParse(source);
  ordered_json cases = ordered_json::parse(cases_text, nullptr, false);
  ASSERT_FALSE(cases.is_discarded());
  ASSERT_FALSE(cases["cases"].empty());
  for (const auto& c : cases["cases"]) {
    SCOPED_TRACE(c.dump());
    ChatTemplateOptions options;
    options.add_generation_prompt = c.value("add_generation_prompt", false);
    options.continue_final_message = c.value("continue_final_message", false);
    EXPECT_EQ(MustRender(tmpl, c["messages"], options), c["rendered"].get<std::string>());
    // The nlohmann::json entry point gives the same text.
    StatusOr<std::string> plain =
        tmpl.Render(nlohmann::json::parse(c["messages"].dump()), options, "", "<|im_end|>");
    ASSERT_TRUE(plain.ok()) << plain.status().ToString();
    EXPECT_EQ(plain.value(), c["rendered"].get<std::string>());
  }
}

TEST(ChatTemplateTest, Qwen25ToolsAndToolCalls) {
  std::string source =
      LoadConfigTemplate(SharedDir() + "/tokenizers/qwen2.5/tokenizer_config.json");
  if (source.empty()) GTEST_SKIP() << "missing tokenizers/qwen2.5/tokenizer_config.json";
  ChatTemplate tmpl = MustParse(source);
  ordered_json tools = ordered_json::array({ordered_json::parse(kWeatherTool)});
  ordered_json messages = ordered_json::parse(R"([
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "20C"}])");
  ChatTemplateOptions options;
  // No system message → the default Qwen system text; tools as one tojson line each; the tool
  // call's arguments through tojson; the tool result wrapped as a user turn.
  EXPECT_EQ(
      MustRender(tmpl, messages, options, tools),
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
      "assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user "
      "query.\n\nYou are provided with function signatures within <tools></tools> XML "
      "tags:\n<tools>\n"
      R"({"type": "function", "function": {"name": "get_weather", "description": "Get the current weather", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}}})"
      "\n</tools>\n\nFor each function call, return a json object with function name and "
      "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
      "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
      "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
      "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
      "{\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
      "<|im_start|>user\n<tool_response>\n20C\n</tool_response><|im_end|>\n"
      "<|im_start|>assistant\n");
}

// ---- Qwen3 ----------------------------------------------------------------------------------

class Qwen3Test : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string source =
        LoadConfigTemplate(SharedDir() + "/tokenizers/qwen3/tokenizer_config.json");
    if (source.empty()) GTEST_SKIP() << "missing tokenizers/qwen3/tokenizer_config.json";
    StatusOr<ChatTemplate> t = ChatTemplate::Parse(source);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tmpl_ = std::make_unique<ChatTemplate>(std::move(t).value());
  }
  std::unique_ptr<ChatTemplate> tmpl_;
};

TEST_F(Qwen3Test, SystemUserGenerationPrompt) {
  ordered_json messages = ordered_json::parse(
      R"([{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi"}])");
  ChatTemplateOptions options;
  // No tools: the system message is rendered before the loop (and skipped inside it because it
  // is loop.first); the user turn; the generation prompt. enable_thinking is undefined, so no
  // empty think block is added.
  const std::string base =
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
      "<|im_start|>assistant\n";
  EXPECT_EQ(MustRender(*tmpl_, messages, options), base);
  // enable_thinking=false (extra kwarg) appends the empty think block after the prompt.
  options.extra_kwargs = {{"enable_thinking", false}};
  EXPECT_EQ(MustRender(*tmpl_, messages, options), base + "<think>\n\n</think>\n\n");
  // enable_thinking=true is "defined and not false": no block.
  options.extra_kwargs = {{"enable_thinking", true}};
  EXPECT_EQ(MustRender(*tmpl_, messages, options), base);
}

TEST_F(Qwen3Test, ReasoningOfEarlierTurnsIsDropped) {
  ordered_json messages = ordered_json::parse(R"([
    {"role": "user", "content": "q1"},
    {"role": "assistant", "content": "<think>\nr1\n</think>\n\na1"},
    {"role": "user", "content": "q2"},
    {"role": "assistant", "content": "a2", "reasoning_content": "r2"}])");
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  // ns.last_query_index = 2 (the last user message that is not a <tool_response>).
  // Message 1 (index 1 <= 2): its inline <think> is split off (content = text after </think>
  // with leading newlines stripped = "a1") and not rendered. Message 3 (index 3 > 2, loop.last):
  // reasoning_content "r2" is rendered in a think block before the content.
  EXPECT_EQ(MustRender(*tmpl_, messages, options),
            "<|im_start|>user\nq1<|im_end|>\n"
            "<|im_start|>assistant\na1<|im_end|>\n"
            "<|im_start|>user\nq2<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nr2\n</think>\n\na2<|im_end|>\n");
}

TEST_F(Qwen3Test, ToolsToolCallsAndToolResponses) {
  ordered_json tools = ordered_json::array({ordered_json::parse(kWeatherTool)});
  ordered_json messages = ordered_json::parse(R"([
    {"role": "system", "content": "S"},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "20C"}])");
  ChatTemplateOptions options;
  // With tools the system turn is: system content + "\n\n" + the "# Tools" preamble with one
  // tojson line per tool. last_query_index = 1. The assistant turn (index 2 > 1, not last, empty
  // reasoning) is rendered without a think block; content "" → no newline before <tool_call>;
  // dict arguments go through tojson. The tool turn opens "<|im_start|>user" (previous role is
  // not tool) and closes with <|im_end|> (it is loop.last).
  EXPECT_EQ(
      MustRender(*tmpl_, messages, options, tools),
      "<|im_start|>system\nS\n\n# Tools\n\nYou may call one or more functions to assist "
      "with the user query.\n\nYou are provided with function signatures within "
      "<tools></tools> XML tags:\n<tools>\n"
      R"({"type": "function", "function": {"name": "get_weather", "description": "Get the current weather", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}}})"
      "\n</tools>\n\nFor each function call, return a json object with function name and "
      "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
      "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
      "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
      "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
      "{\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
      "<|im_start|>user\n<tool_response>\n20C\n</tool_response><|im_end|>\n"
      "<|im_start|>assistant\n");
}

TEST_F(Qwen3Test, ReasoningContentWithinTheCurrentAgentTurn) {
  ordered_json messages = ordered_json::parse(R"([
    {"role": "user", "content": "q"},
    {"role": "assistant", "content": "calling", "reasoning_content": "need tool",
     "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
    {"role": "tool", "content": "ok"},
    {"role": "assistant", "content": "done", "reasoning_content": "final thought"}])");
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  // last_query_index = 0, so both assistant turns come after the query: the first keeps its
  // think block because its reasoning is non-empty, the last because it is loop.last. Content
  // "calling" is non-empty → "\n" before <tool_call>; string arguments are inserted verbatim.
  EXPECT_EQ(MustRender(*tmpl_, messages, options),
            "<|im_start|>user\nq<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nneed tool\n</think>\n\ncalling\n<tool_call>\n"
            "{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call><|im_end|>\n"
            "<|im_start|>user\n<tool_response>\nok\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n<think>\nfinal thought\n</think>\n\ndone<|im_end|>\n");
}

TEST_F(Qwen3Test, ContinueFinalMessageCutsAfterThePrefill) {
  ordered_json messages = ordered_json::parse(
      R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, I"}])");
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  options.continue_final_message = true;
  // The final assistant turn is loop.last after the query, so it gets an empty think block;
  // the text is cut right after "Hello, I" (no <|im_end|>).
  EXPECT_EQ(MustRender(*tmpl_, messages, options),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
            "Hello, I");
}

// ---- Llama 3.1 ------------------------------------------------------------------------------

class Llama31Test : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string source;
    ASSERT_TRUE(
        ReadFile(std::string(KILN_JINJA_TESTDATA) + "/llama3.1_chat_template.jinja", &source));
    StatusOr<ChatTemplate> t = ChatTemplate::Parse(source);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tmpl_ = std::make_unique<ChatTemplate>(std::move(t).value());
  }
  std::unique_ptr<ChatTemplate> tmpl_;
};

TEST_F(Llama31Test, SystemUserAssistantConversation) {
  ordered_json messages = ordered_json::parse(R"([
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And Germany?"}])");
  ChatTemplateOptions options;
  // Llama 3.1 prompt format: <|begin_of_text|>, a system header whose body starts with the
  // knowledge-cutoff and date lines (date_string defaults to "26 Jul 2024"), then each turn as
  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>, then the assistant header.
  EXPECT_EQ(MustRender(*tmpl_, messages, options, nullptr, "<|begin_of_text|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
            "You are a helpful assistant.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nParis.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nAnd Germany?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // date_string as an extra kwarg replaces the default date.
  options.extra_kwargs = {{"date_string", "01 Jan 2025"}};
  std::string dated = MustRender(*tmpl_, messages, options, nullptr, "<|begin_of_text|>");
  EXPECT_NE(dated.find("Today Date: 01 Jan 2025\n\n"), std::string::npos) << dated;
}

TEST_F(Llama31Test, JsonToolCallingConversation) {
  ordered_json tools = ordered_json::array({ordered_json::parse(kWeatherTool)});
  ordered_json messages = ordered_json::parse(R"([
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "tool_calls": [
      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "20C, sunny"}])");
  ChatTemplateOptions options;
  // Llama 3.1 JSON-based tool calling: "Environment: ipython" in the system turn; the tool
  // definitions (tojson, indent 4) go into the first user turn after the fixed instructions;
  // the assistant's call is {"name": ..., "parameters": ...} ending in <|eot_id|>; the tool
  // result comes back in an ipython turn (a string is iterable, so it is JSON-quoted).
  EXPECT_EQ(MustRender(*tmpl_, messages, options, tools, "<|begin_of_text|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul "
            "2024\n\nYou are a helpful assistant.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n"
            "Given the following functions, please respond with a JSON for a function call with "
            "its proper arguments that best answers the given prompt.\n\n"
            "Respond in the format {\"name\": function name, \"parameters\": dictionary of "
            "argument name and its value}.Do not use variables.\n\n"
            "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": "
            "\"get_weather\",\n        \"description\": \"Get the current weather\",\n        "
            "\"parameters\": {\n            \"type\": \"object\",\n            \"properties\": "
            "{\n                \"city\": {\n                    \"type\": \"string\",\n        "
            "            \"description\": \"City name\"\n                }\n            },\n     "
            "       \"required\": [\n                \"city\"\n            ]\n        }\n    "
            "}\n}\n\nWhat is the weather in Paris?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>"
            "<|start_header_id|>ipython<|end_header_id|>\n\n\"20C, sunny\"<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_F(Llama31Test, TemplateErrorsBecomeStatuses) {
  ChatTemplateOptions options;
  ordered_json tools = ordered_json::array({ordered_json::parse(kWeatherTool)});
  // Tools need a first user message; the template raises otherwise.
  StatusOr<std::string> r =
      tmpl_->Render(ordered_json::parse(R"([{"role": "system", "content": "s"}])"), tools, nullptr,
                    options, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(
                "Cannot put tools in the first user message when there's no first user message!"),
            std::string::npos)
      << r.status().ToString();
  // Two tool calls in one message.
  ordered_json two_calls = ordered_json::parse(R"([{"role": "user", "content": "u"},
    {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": {}}},
                                         {"function": {"name": "b", "arguments": {}}}]}])");
  r = tmpl_->Render(two_calls, nullptr, nullptr, options, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("only supports single tool-calls"), std::string::npos);
}

TEST_F(Llama31Test, ContinueFinalMessageAfterTrimmedContent) {
  // The template trims message content, so the final message's trailing space is gone from the
  // render: the cut falls after the stripped text (transformers' second rule).
  ordered_json messages = ordered_json::parse(
      R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The answer is "}])");
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  options.continue_final_message = true;
  EXPECT_EQ(MustRender(*tmpl_, messages, options, nullptr, "<B>"),
            "<B><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
            "2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>"
            "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nThe answer is");
}

TEST(ChatTemplateTest, Llama32StyleDateFromStrftimeNow) {
  // Llama 3.2/3.3 templates take today's date from strftime_now("%d %b %Y").
  ChatTemplate tmpl = MustParse(
      "{%- if not date_string is defined %}\n"
      "    {%- if strftime_now is defined %}\n"
      "        {%- set date_string = strftime_now(\"%d %b %Y\") %}\n"
      "    {%- else %}\n"
      "        {%- set date_string = \"26 Jul 2024\" %}\n"
      "    {%- endif %}\n"
      "{%- endif %}\n"
      "Today Date: {{ date_string }}");
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%d %b %Y", &tm);
  EXPECT_EQ(MustRender(tmpl, ordered_json::array(), ChatTemplateOptions{}),
            std::string("Today Date: ") + buf);
}

// ---- continue_final_message and errors ------------------------------------------------------

TEST(ChatTemplateTest, ContinueFinalMessageKeepsUntrimmedTrailingSpace) {
  ChatTemplate tmpl =
      MustParse("{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}");
  ChatTemplateOptions options;
  options.add_generation_prompt = false;
  options.continue_final_message = true;
  ordered_json messages = ordered_json::parse(
      R"([{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi "}])");
  // The content appears verbatim (with its trailing space), so the cut keeps the space.
  EXPECT_EQ(MustRender(tmpl, messages, options), "<user>Say hi</user><assistant>Hi ");
  // The last occurrence wins.
  ordered_json repeated = ordered_json::parse(
      R"([{"role": "user", "content": "ok"}, {"role": "assistant", "content": "ok"}])");
  EXPECT_EQ(MustRender(tmpl, repeated, options), "<user>ok</user><assistant>ok");
  // Content given as parts: the last text part is continued.
  ordered_json parts = ordered_json::parse(R"([{"role": "assistant",
      "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}])");
  ChatTemplate parts_tmpl = MustParse(
      "{% for m in messages %}{% for p in m.content %}[{{ p.text }}]{% endfor %}{% endfor %}END");
  EXPECT_EQ(MustRender(parts_tmpl, parts, options), "[A][B");
}

TEST(ChatTemplateTest, ContinueFinalMessageErrors) {
  ChatTemplate tmpl = MustParse("{% for m in messages %}{{ m.content }}{% endfor %}");
  ChatTemplateOptions options;
  options.continue_final_message = true;
  ordered_json ends_with_assistant = ordered_json::parse(
      R"([{"role": "user", "content": "u"}, {"role": "assistant", "content": "xyz"}])");
  // Both flags at once.
  options.add_generation_prompt = true;
  StatusOr<std::string> r = tmpl.Render(ends_with_assistant, nullptr, nullptr, options, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not compatible"), std::string::npos);
  // Last message from the user.
  options.add_generation_prompt = false;
  r = tmpl.Render(ordered_json::parse(R"([{"role": "user", "content": "u"}])"), nullptr, nullptr,
                  options, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("last message to be from the assistant"), std::string::npos);
  // The template does not render the content.
  ChatTemplate hides = MustParse("{% for m in messages %}{{ m.role }}{% endfor %}");
  r = hides.Render(ends_with_assistant, nullptr, nullptr, options, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("does not appear in the rendered chat"), std::string::npos);
}

TEST(ChatTemplateTest, BadTemplatesAndInputsAreStatuses) {
  StatusOr<ChatTemplate> bad = ChatTemplate::Parse("{% for m in messages %}\n{{ m | frob }}");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 2, column 8: unknown filter 'frob'"),
            std::string::npos)
      << bad.status().ToString();

  ChatTemplate tmpl = MustParse("{{ messages[0].content.upper() }}");
  StatusOr<std::string> r = tmpl.Render(nlohmann::json::object(), ChatTemplateOptions{}, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("messages must be a JSON array"), std::string::npos);
  r = tmpl.Render(nlohmann::json::array(), ChatTemplateOptions{}, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 1, column 16: list object has no element 0"),
            std::string::npos)
      << r.status().ToString();
}

TEST(ChatTemplateTest, VariablesVisibleToTheTemplate) {
  ChatTemplate tmpl = MustParse(
      "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|{{ documents }}|"
      "{{ custom }}|{{ messages|length }}");
  ChatTemplateOptions options;
  options.extra_kwargs = {{"custom", "x"}, {"messages", "ignored"}};
  options.documents = nlohmann::json::array({{{"title", "t"}}});
  StatusOr<std::string> r =
      tmpl.Render(nlohmann::json::array({{{"role", "user"}}}), options, "<s>", "</s>");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value(), "<s>|</s>|True|None|[{'title': 't'}]|x|1");
}

}  // namespace
}  // namespace kiln
