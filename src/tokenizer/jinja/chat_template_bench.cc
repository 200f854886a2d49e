// Chat-template render speed: µs per render of a 10-turn Qwen2.5 / Qwen3 chat (system + 10 user and
// 10 assistant messages of ~200 bytes each), and the one-time parse of the template. Reads the
// templates from $KILN_SHARED (default ../shared). The budget it is compared with: a render must
// stay far below one decode step of the engine (~10 ms), i.e. well under 1 ms.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tokenizer/jinja/chat_template.h"

namespace kiln {
namespace {

std::string LoadTemplate(const std::string& model) {
  const char* env = std::getenv("KILN_SHARED");
  std::string path = std::string(env != nullptr ? env : "../shared") + "/tokenizers/" + model +
                     "/tokenizer_config.json";
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json config = nlohmann::json::parse(ss.str(), nullptr, false);
  if (config.is_discarded() || !config.contains("chat_template")) return "";
  return config["chat_template"].get<std::string>();
}

nlohmann::json TenTurnChat() {
  nlohmann::json messages = nlohmann::json::array();
  messages.push_back({{"role", "system"}, {"content", "You are a helpful assistant."}});
  for (int i = 0; i < 10; ++i) {
    std::string turn = std::to_string(i);
    messages.push_back(
        {{"role", "user"},
         {"content", "Question " + turn + ": explain how a paged KV cache works, and why prefix " +
                         "caching of full blocks helps chat workloads with long system prompts."}});
    messages.push_back(
        {{"role", "assistant"},
         {"content", "Answer " + turn + ": the cache is split into fixed-size blocks; requests " +
                         "map logical blocks to physical ones, so shared prefixes reuse blocks."}});
  }
  return messages;
}

void BM_Render(benchmark::State& state, const std::string& model) {
  std::string source = LoadTemplate(model);
  if (source.empty()) {
    state.SkipWithError(("missing tokenizers/" + model + "/tokenizer_config.json").c_str());
    return;
  }
  StatusOr<ChatTemplate> tmpl = ChatTemplate::Parse(source);
  if (!tmpl.ok()) {
    state.SkipWithError(tmpl.status().ToString().c_str());
    return;
  }
  nlohmann::json messages = TenTurnChat();
  ChatTemplateOptions options;
  size_t bytes = 0;
  for (auto _ : state) {
    StatusOr<std::string> out = tmpl->Render(messages, options, "", "<|im_end|>");
    if (!out.ok()) {
      state.SkipWithError(out.status().ToString().c_str());
      return;
    }
    bytes = out->size();
    benchmark::DoNotOptimize(out);
  }
  state.counters["output_bytes"] = static_cast<double>(bytes);
  state.SetLabel(model + " template, system + 10 user/assistant turns");
}

void BM_Parse(benchmark::State& state, const std::string& model) {
  std::string source = LoadTemplate(model);
  if (source.empty()) {
    state.SkipWithError(("missing tokenizers/" + model + "/tokenizer_config.json").c_str());
    return;
  }
  for (auto _ : state) {
    StatusOr<ChatTemplate> tmpl = ChatTemplate::Parse(source);
    benchmark::DoNotOptimize(tmpl);
  }
  state.SetLabel(model + " template parse");
}

BENCHMARK_CAPTURE(BM_Render, qwen2_5, std::string("qwen2.5"))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Render, qwen3, std::string("qwen3"))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Parse, qwen2_5, std::string("qwen2.5"))->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kiln

BENCHMARK_MAIN();
