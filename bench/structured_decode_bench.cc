// Decode step time with structured-output constraints vs without, through the Engine (issue 6
// goal: constrained ≤ 1.1× unconstrained). The model is models/qwen2.5-tiny-dummy (dummy weights,
// real Qwen2.5 vocabulary: 151,936-row lm_head) on the engine's default backend.
//
// One round = two runs of the same batch of B concurrent requests (same prompts, same seeds,
// temperature 1):
//   constrained:   request i carries schema i of tests/structured/schemas/ (cycled) as
//                  response_format json_schema, max_tokens M; request i stops after n_i tokens;
//   unconstrained: the same requests without response_format, max_tokens = n_i and ignore_eos,
//                  so both runs have exactly the same batch composition at every step.
// Step time = wall time, and process CPU time (all threads; the figure compared with the goal,
// since wall time on a shared machine measures the other processes too), of the run / engine steps
// taken (EngineMetrics::num_steps); the CPU backend runs on --threads threads (default 1). Grammars are
// compiled (and the vocabulary index built) in a warm-up round that is not measured, as a server
// with a warm grammar cache would have them. Rounds alternate the two runs; medians are reported.
//
// Usage: structured_decode_bench [--batch B] [--max-tokens M] [--rounds R] [--threads T]
//                                [--device cpu|cuda] [--model DIR] [--kv-cache-gib G]
//                                [--async-scheduling true|false]
// --model takes any config.json directory (weights are always dummy), e.g. a 7B config on a GPU
// with the Qwen2.5 tokenizer (Qwen2's vocabulary).
// Reads KILN_SOURCE_DIR (default: the source tree it was built from) and KILN_SHARED (default
// $KILN_SOURCE_DIR/../shared) for the Qwen2.5 tokenizer.
#include <algorithm>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/engine.h"

#ifndef KILN_BENCH_SOURCE_DIR
#define KILN_BENCH_SOURCE_DIR "."
#endif

namespace {

using kiln::Engine;
using kiln::Request;
using kiln::RequestOutput;
using kiln::RequestStream;
using kiln::ResponseFormat;

struct RunResult {
  double wall_s = 0;
  double cpu_s = 0;  // process CPU time (all threads): robust to other processes on the machine
  int64_t steps = 0;
  std::vector<int> num_tokens;  // per request
  int num_stop = 0;             // requests that finished with "stop"
  double step_ms() const { return steps > 0 ? 1e3 * wall_s / static_cast<double>(steps) : 0; }
  double step_cpu_ms() const { return steps > 0 ? 1e3 * cpu_s / static_cast<double>(steps) : 0; }
};

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

// Submits all requests at once and waits for every one to finish.
RunResult Run(Engine* engine, const std::vector<Request>& requests) {
  RunResult r;
  const int64_t steps0 = engine->Metrics().num_steps;
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = ProcessCpuSeconds();
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (const Request& req : requests) {
    auto s = engine->Submit(req);
    if (!s.ok()) {
      std::fprintf(stderr, "submit failed: %s\n", s.status().ToString().c_str());
      std::exit(1);
    }
    streams.push_back(std::move(s).value());
  }
  for (auto& s : streams) {
    RequestOutput out;
    int n = 0;
    while (s->Next(&out)) {
      n += static_cast<int>(out.new_token_ids.size());
      if (out.finished) {
        if (out.finish_reason == kiln::FinishReason::kError) {
          std::fprintf(stderr, "request failed: %s\n", out.error.ToString().c_str());
          std::exit(1);
        }
        if (out.finish_reason == kiln::FinishReason::kStop) ++r.num_stop;
        break;
      }
    }
    r.num_tokens.push_back(n);
  }
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.cpu_s = ProcessCpuSeconds() - cpu0;
  r.steps = engine->Metrics().num_steps - steps0;
  return r;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int batch = 8, max_tokens = 128, rounds = 3, threads = 1;
  double kv_gib = 0.25;
  bool async = true;
  std::string device = "cpu", model;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    if (!std::strcmp(argv[i], "--kv-cache-gib")) kv_gib = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--max-tokens")) max_tokens = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--async-scheduling")) {
      async = std::strcmp(argv[i + 1], "false") != 0;
    }
  }
  const std::string source = EnvOr("KILN_SOURCE_DIR", KILN_BENCH_SOURCE_DIR);
  const std::string shared = EnvOr("KILN_SHARED", source + "/../shared");

  std::vector<std::string> schema_files;
  for (const auto& e : std::filesystem::directory_iterator(source + "/tests/structured/schemas")) {
    if (e.path().extension() == ".json") schema_files.push_back(e.path().string());
  }
  std::sort(schema_files.begin(), schema_files.end());
  if (schema_files.empty()) {
    std::fprintf(stderr, "no schemas under %s/tests/structured/schemas\n", source.c_str());
    return 1;
  }

  kiln::EngineOptions options;
  options.model.model_path = model.empty() ? source + "/models/qwen2.5-tiny-dummy" : model;
  options.model.load_format = "dummy";
  options.model.tokenizer_path = shared + "/tokenizers/qwen2.5";
  options.cache.kv_cache_memory_bytes = static_cast<int64_t>(kv_gib * (1 << 30));
  options.device.num_threads = threads;
  options.device.device = device;
  options.scheduler.async_scheduling = async;
  auto created = Engine::Create(options);
  if (!created.ok()) {
    std::fprintf(stderr, "Engine::Create: %s\n", created.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<Engine> engine = std::move(created).value();
  const kiln::Tokenizer* tokenizer = engine->tokenizer();
  if (tokenizer == nullptr) {
    std::fprintf(stderr, "no tokenizer loaded from %s\n", options.model.tokenizer_path.c_str());
    return 1;
  }

  std::vector<Request> constrained(static_cast<size_t>(batch));
  std::vector<std::string> names;
  for (int i = 0; i < batch; ++i) {
    const std::string& file = schema_files[static_cast<size_t>(i) % schema_files.size()];
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    Request& r = constrained[static_cast<size_t>(i)];
    const std::string name = std::filesystem::path(file).stem().string();
    names.push_back(name);
    r.prompt_token_ids = tokenizer->Encode("Fill in the " + name + " record as JSON:", false);
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 1000 + static_cast<uint64_t>(i);
    r.sampling.max_tokens = max_tokens;
    r.sampling.response_format.type = ResponseFormat::Type::kJsonSchema;
    r.sampling.response_format.json_schema = text.str();
  }
  // Warm-up: vocabulary index, grammar compilation (cached by schema), backend buffers.
  const RunResult warm = Run(engine.get(), constrained);
  std::vector<Request> plain = constrained;
  for (int i = 0; i < batch; ++i) {
    Request& r = plain[static_cast<size_t>(i)];
    r.sampling.response_format = ResponseFormat{};
    r.sampling.max_tokens = std::max(1, warm.num_tokens[static_cast<size_t>(i)]);
    r.sampling.ignore_eos = true;
  }
  Run(engine.get(), plain);

  std::vector<double> with_ms, without_ms, with_cpu_ms, without_cpu_ms;
  RunResult last_with, last_without;
  for (int round = 0; round < rounds; ++round) {
    last_with = Run(engine.get(), constrained);
    last_without = Run(engine.get(), plain);
    // Sampling is seeded, but CPU batching can change the last bits of the logits when requests
    // join the batch at different steps, so a constrained run may differ slightly from the warm-up.
    if (last_without.num_tokens != warm.num_tokens) {
      std::fprintf(stderr, "unconstrained run produced other lengths than requested\n");
      return 1;
    }
    with_ms.push_back(last_with.step_ms());
    without_ms.push_back(last_without.step_ms());
    with_cpu_ms.push_back(last_with.step_cpu_ms());
    without_cpu_ms.push_back(last_without.step_cpu_ms());
  }

  int total_tokens = 0;
  for (int n : warm.num_tokens) total_tokens += n;
  std::printf("structured_decode_bench: model %s (dummy weights, vocab %d), device %s, %d threads, "
              "async scheduling %s\n",
              options.model.model_path.c_str(), engine->model_info().vocab_size,
              engine->model_info().device.c_str(), threads, async ? "on" : "off");
  std::printf("batch %d requests (schemas %s .. %s), %d tokens in total, "
              "%d/%d constrained requests finished with stop (max_tokens %d)\n",
              batch, names.front().c_str(), names.back().c_str(), total_tokens, warm.num_stop,
              batch, max_tokens);
  for (int round = 0; round < rounds; ++round) {
    const size_t i = static_cast<size_t>(round);
    std::printf("  round %d: constrained %.3f ms/step (CPU %.3f), unconstrained %.3f ms/step "
                "(CPU %.3f)\n",
                round, with_ms[i], with_cpu_ms[i], without_ms[i], without_cpu_ms[i]);
  }
  {
    int with_tokens = 0;
    for (int n : last_with.num_tokens) with_tokens += n;
    std::printf("  last round: constrained %d tokens in %lld steps, unconstrained %d tokens in %lld "
                "steps\n",
                with_tokens, static_cast<long long>(last_with.steps), total_tokens,
                static_cast<long long>(last_without.steps));
  }
  const double a = Median(with_ms), b = Median(without_ms);
  const double ca = Median(with_cpu_ms), cb = Median(without_cpu_ms);
  std::printf("median wall step time: constrained %.3f ms, unconstrained %.3f ms, ratio %.3fx\n", a,
              b, a / b);
  std::printf("median CPU step time:  constrained %.3f ms, unconstrained %.3f ms, ratio %.3fx "
              "(goal <= 1.10x): %s\n",
              ca, cb, ca / cb, ca / cb <= 1.10 ? "MET" : "NOT MET");
  return 0;
}
