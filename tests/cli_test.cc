// End-to-end tests of the kiln binary's command-line contract (issues 2 and 3):
// `kiln generate` greedy output against the published stories260K reference, error exits (also
// of `kiln bench`), and `kiln tokenize` JSON lines against the HF tokenizers reference cases.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

namespace kiln {
namespace {

using nlohmann::json;
using testing::KilnBinary;
using testing::RunCommand;
using testing::SharedDir;

std::vector<int32_t> ReadIds(const std::string& path) {
  std::istringstream in(testing::ReadFile(path));
  std::vector<int32_t> ids;
  int32_t v;
  while (in >> v) ids.push_back(v);
  return ids;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(KilnBinary())) GTEST_SKIP() << "kiln binary not built";
    stories_ = SharedDir() + "/models/stories260K";
    if (!std::filesystem::exists(stories_)) GTEST_SKIP() << "missing " << stories_;
    fifo_ = (std::filesystem::temp_directory_path() /
             ("kiln_cli_fifo_" + std::to_string(::getpid()) + ".gguf"))
                .string();
    std::filesystem::remove(fifo_);
    ::mkfifo(fifo_.c_str(), 0600);
  }
  void TearDown() override {
    if (!fifo_.empty()) std::filesystem::remove(fifo_);
  }
  std::string stories_;
  std::string fifo_;
};

void ExpectGreedy256(const std::string& model, const std::string& stories_dir) {
  auto r = RunCommand(KilnBinary() + " generate --model " + model +
                      " --max-tokens 256 --temperature 0 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  std::vector<int32_t> expected = ReadIds(stories_dir + "/greedy256.ids");
  ASSERT_EQ(expected.size(), 256u);
  EXPECT_EQ(j["prompt_token_ids"].get<std::vector<int32_t>>(), std::vector<int32_t>{1});
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), expected);
  EXPECT_EQ(j["finish_reason"], "length");
  ASSERT_TRUE(j.contains("text"));
  std::string want = testing::ReadFile(stories_dir + "/greedy256.txt");
  while (!want.empty() && want.back() == '\n') want.pop_back();
  std::string got = j["text"].get<std::string>();
  while (!got.empty() && got.back() == '\n') got.pop_back();
  EXPECT_EQ(got, want);
}

TEST_F(CliTest, GenerateGreedyFromGgufMatchesReference) {
  ExpectGreedy256(stories_ + "/stories260K.gguf", stories_);
}

TEST_F(CliTest, GenerateGreedyFromHfDirMatchesReference) {
  ExpectGreedy256(stories_ + "/hf", stories_);
}

TEST_F(CliTest, GenerateTextPromptStreams) {
  auto r = RunCommand(KilnBinary() + " generate --model " + stories_ +
                      "/stories260K.gguf --prompt 'Once upon a time' --max-tokens 20 --seed 7");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(r.out.size(), 10u);
  // Same seed → same text.
  auto again = RunCommand(KilnBinary() + " generate --model " + stories_ +
                          "/stories260K.gguf --prompt 'Once upon a time' --max-tokens 20 --seed 7");
  EXPECT_EQ(r.out, again.out);
}

TEST_F(CliTest, GenerateErrorsExitNonZeroWithOneLine) {
  struct Case {
    std::string args;
    std::string needle;
  } cases[] = {
      {"generate", "--model"},
      {"generate --model /nonexistent/model.gguf", "nonexistent"},
      {"generate --model " + stories_ + "/stories260K.gguf --bogus 1", "--bogus"},
      {"generate --model " + stories_ + "/stories260K.gguf --max-tokens abc", "max-tokens"},
      {"generate --model " + stories_ + "/stories260K.gguf --prompt-ids 1,99999", "99999"},
      {"generate --model " + stories_ + "/stories260K.gguf --temperature -1", "temperature"},
      {"frobnicate", "unknown subcommand"},
      // Regressions (bad-input hunt, session 6): 64-bit flag values were cut to 32 bits
      // (--max-tokens 4294967301 generated 5 tokens), a missing --tokenizer was a warning,
      // --http-threads 100000 aborted, and a FIFO as the model hung in open().
      {"generate --model " + stories_ + "/stories260K.gguf --max-tokens 4294967301",
       "--max-tokens 4294967301 is out of range"},
      {"generate --model " + stories_ + "/hf --max-model-len 4294967297", "out of range"},
      {"generate --model " + stories_ + "/hf --tokenizer /nonexistent/tok --prompt-ids 1",
       "loading the tokenizer"},
      {"serve --model " + stories_ + "/hf --http-threads 100000", "--http-threads"},
      {"serve --model " + stories_ + "/hf --port 4294986196", "out of range"},
      {"serve --model " + stories_ + "/hf --retry-after -1", "--retry-after"},
      {"generate --model " + stories_ + "/hf --kv-fetch-timeout-ms -1", "--kv-fetch-timeout-ms"},
      {"generate --model " + stories_ + "/hf --kv-fetch-timeout-ms 99999999999",
       "--kv-fetch-timeout-ms"},
      {"generate --model " + fifo_ + " --prompt-ids 1", "not a regular file"},
  };
  for (const auto& c : cases) {
    auto r = RunCommand(KilnBinary() + " " + c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_LT(r.exit_code, 128) << "crashed: " << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << " → " << r.err;
  }
}

// Regressions: an unwritable --disk-cache-dir was accepted silently, and a --cpu-offload-gb beyond
// the machine's memory aborted with an uncaught std::bad_alloc. Both exit 1 with one message.
TEST_F(CliTest, UnusableKvTierFlagsExitOneWithAMessage) {
  struct Case {
    std::string flags;
    std::string needle;
  } cases[] = {
      {"--disk-cache-dir /proc/self", "/proc/self is not writable"},
      {"--cpu-offload-gb 999999", "physical memory"},
  };
  for (const auto& c : cases) {
    auto r = RunCommand(KilnBinary() + " generate --model " + stories_ +
                        "/stories260K.gguf --max-tokens 1 " + c.flags);
    EXPECT_EQ(r.exit_code, 1) << c.flags << "\n" << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.flags << " → " << r.err;
  }
}

// `kiln bench` refuses malformed or out-of-range flags before touching a device (exit 2, the
// flag named), so these run on machines without a GPU.
TEST(CliBenchTest, BadFlagsExitTwoNamingTheFlag) {
  if (!std::filesystem::exists(KilnBinary())) GTEST_SKIP() << "kiln binary not built";
  struct Case {
    std::string args;
    std::string needle;
  } cases[] = {
      {"bench throughput --model m --num-prompts 0", "--num-prompts must be a positive integer"},
      {"bench throughput --model m --input-len abc", "input-len"},
      {"bench throughput --model m --output-len 99999999999", "--output-len must be a positive"},
      {"bench throughput --model m --seed x", "seed"},
      {"bench throughput --model m --bogus 1", "--bogus"},
      {"bench frobnicate", "unknown mode"},
  };
  for (const auto& c : cases) {
    auto r = RunCommand(KilnBinary() + " " + c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << " → " << r.err;
  }
}

TEST(CliTokenizeTest, Qwen25CasesThroughJsonLines) {
  std::string dir = SharedDir() + "/tokenizers/qwen2.5";
  if (!std::filesystem::exists(KilnBinary())) GTEST_SKIP() << "kiln binary not built";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "missing " << dir;
  json cases = json::parse(testing::ReadFile(dir + "/cases.json"));
  std::string input;
  for (const auto& c : cases["cases"]) {
    input += json{{"text", c["text"]}}.dump() + "\n";
    input += json{{"ids", c["ids"]}}.dump() + "\n";
  }
  input += "this is not json\n";
  input += "{\"ids\": [999999999]}\n";
  input +=
      json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"add_generation_prompt", true}}
          .dump() +
      "\n";
  auto r = RunCommand(KilnBinary() + " tokenize --tokenizer " + dir, input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream out(r.out);
  std::string line;
  for (const auto& c : cases["cases"]) {
    ASSERT_TRUE(std::getline(out, line));
    EXPECT_EQ(json::parse(line)["ids"], c["ids"]) << c["text"];
    ASSERT_TRUE(std::getline(out, line));
    EXPECT_EQ(json::parse(line)["text"], c["decoded"]) << c["text"];
  }
  ASSERT_TRUE(std::getline(out, line));
  EXPECT_TRUE(json::parse(line).contains("error"));
  ASSERT_TRUE(std::getline(out, line));
  EXPECT_TRUE(json::parse(line).contains("error"));
  ASSERT_TRUE(std::getline(out, line));
  EXPECT_EQ(json::parse(line)["prompt"],
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

// Issue 3: stories260K's tokenizer from the GGUF file and from hf/tokenizer.json encode the first
// sentence of greedy256.txt to the same ids, which are the first 15 reference greedy ids.
TEST_F(CliTest, StoriesTokenizerFromGgufAndHfEncodeLikeTheReference) {
  const std::string line = R"({"text": "Once upon a time, there was a little girl named Lily."})";
  std::vector<int32_t> greedy = ReadIds(stories_ + "/greedy256.ids");
  std::vector<int32_t> expected(greedy.begin(), greedy.begin() + 15);
  for (const std::string path : {stories_ + "/stories260K.gguf", stories_ + "/hf"}) {
    auto r = RunCommand(KilnBinary() + " tokenize --tokenizer " + path, line + "\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out)["ids"].get<std::vector<int32_t>>(), expected) << path;
  }
}

// Regression: tool schemas reach the chat template in document key order (HF's tojson keeps the
// order of the Python dict, sort_keys=False); a sorted-key JSON type used to reorder them.
// Regression: a non-boolean flag in a JSON line aborted `kiln tokenize` (an uncaught
// nlohmann::json type_error); it is an error line like any other bad line.
TEST_F(CliTest, TokenizeWrongTypedFlagIsAnErrorLine) {
  const std::string in = std::string(R"({"text":"Once","add_special_tokens":"yes"})") + "\n" +
                         R"({"ids":[1,2],"skip_special_tokens":1})" + "\n" +
                         R"({"text":"Once","add_special_tokens":null})" + "\n";
  auto r = RunCommand(KilnBinary() + " tokenize --model " + stories_ + "/hf", in);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  std::vector<json> out;
  while (std::getline(lines, line)) out.push_back(json::parse(line));
  ASSERT_EQ(out.size(), 3u) << r.out;
  EXPECT_NE(out[0].value("error", "").find("add_special_tokens"), std::string::npos) << out[0];
  EXPECT_NE(out[1].value("error", "").find("skip_special_tokens"), std::string::npos) << out[1];
  EXPECT_TRUE(out[2].contains("ids")) << out[2];
}

TEST(CliTokenizeTest, ToolSchemaKeepsKeyOrder) {
  std::string dir = SharedDir() + "/tokenizers/qwen2.5";
  if (!std::filesystem::exists(KilnBinary())) GTEST_SKIP() << "kiln binary not built";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "missing " << dir;
  const std::string tool =
      R"({"type": "function", "function": {"name": "get_weather", "description": "d", )"
      R"("parameters": {"type": "object", "properties": {"city": {"type": "string"}}, )"
      R"("required": ["city"]}}})";
  std::string line = R"({"messages": [{"role": "user", "content": "hi"}], "tools": [)" + tool +
                     R"(], "add_generation_prompt": true})";
  auto r = RunCommand(KilnBinary() + " tokenize --tokenizer " + dir, line + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string prompt = json::parse(r.out)["prompt"].get<std::string>();
  EXPECT_NE(prompt.find(tool), std::string::npos) << prompt;
}

// `kiln quantize` writes an FP8 checkpoint that loads again (eval runs it dequantized), and
// `kiln eval` prints one row per model and config: a config against itself has zero KL and full
// agreement, the perplexities are those of the model. Bad flags exit 2 naming the problem.
TEST(CliFp8Test, QuantizeAndEval) {
  const std::string tiny = SharedDir() + "/models/tinystories-656k";
  const std::string s260 = SharedDir() + "/models/stories260K/hf";
  if (!std::filesystem::exists(KilnBinary())) GTEST_SKIP() << "kiln binary not built";
  if (!std::filesystem::exists(tiny) || !std::filesystem::exists(s260))
    GTEST_SKIP() << "missing ../shared/models/tinystories-656k or stories260K/hf";
  const std::string out =
      (std::filesystem::temp_directory_path() / ("kiln_cli_fp8_" + std::to_string(getpid())))
          .string();
  // tinystories-656k's kv size is 64: not whole 128x128 blocks, which vLLM could not load, so the
  // default (auto) writes per-channel compressed-tensors and an explicit block is refused.
  auto r =
      RunCommand(KilnBinary() + " quantize --model " + tiny + " --quantization fp8 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("kv size (kv heads x head_dim) 64"), std::string::npos) << r.err;
  const json config = json::parse(testing::ReadFile(out + "/config.json"));
  EXPECT_EQ(config["quantization_config"]["quant_method"], "compressed-tensors");
  EXPECT_EQ(config["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"],
            "channel");
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer.json"));
  r = RunCommand(KilnBinary() + " quantize --model " + tiny +
                 " --quantization fp8 --quantization-scale block --out " + out + "_block");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("use --quantization-scale per-channel"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out + "_block/model.safetensors"));

  const char* src = std::getenv("KILN_SOURCE_DIR");
  const std::string text = std::string(src ? src : ".") + "/tests/data/heldout_story.txt";
  r = RunCommand(KilnBinary() + " eval --model " + tiny + "," + s260 + "," + out +
                 " --configs none,none --text " + text + " --json --num-threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int rows = 0;
  for (; std::getline(lines, line); ++rows) {
    const json row = json::parse(line);
    EXPECT_EQ(row["mean_kl"].get<double>(), 0.0) << line;
    EXPECT_EQ(row["top1_agreement"].get<double>(), 1.0) << line;
    EXPECT_GT(row["tokens"].get<int>(), 150) << line;
    EXPECT_GT(row["ppl_text"].get<double>(), 1.0) << line;
    EXPECT_LT(row["ppl_text"].get<double>(), 50.0) << line;  // a story these models can read
  }
  EXPECT_EQ(rows, 6);
  std::filesystem::remove_all(out);

  for (const std::string& bad :
       {std::string(" quantize --model ") + tiny + " --quantization int4 --out " + out,
        std::string(" quantize --model ") + tiny + " --quantization fp8",
        std::string(" quantize --model ") + tiny +
            " --quantization fp8 --quantization-scale "
            "per-group --out " +
            out,
        std::string(" eval --model ") + tiny + " --configs none",
        std::string(" eval --model ") + tiny + " --max-len 1"}) {
    r = RunCommand(KilnBinary() + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("error:"), std::string::npos) << r.err;
  }
  // A quantized checkpoint cannot be quantized again.
  r = RunCommand(KilnBinary() + " quantize --model " + tiny + " --quantization fp8 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCommand(KilnBinary() + " quantize --model " + out + " --quantization fp8 --out " + out +
                 "2");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("already quantized"), std::string::npos) << r.err;
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace kiln
