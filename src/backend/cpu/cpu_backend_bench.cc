// CPU decode throughput of the reference backend (one sequence, greedy, 2 threads by default) for
// stories260K (GGUF) and a dummy-weight Qwen2.5-0.5B, beside the memory-bandwidth floor: the bytes
// one decode step must read (every float32 weight matrix incl. lm_head, norms, and the KV cache up
// to the current position) divided by the copy bandwidth measured in the same run
// (STREAM convention: 2 × bytes / time for a memcpy of 256 MiB).
//
// Run: build-model/src/backend/cpu/cpu_backend_bench  (KILN_SHARED points at ../shared)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <iostream>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/test_data.h"

namespace kiln {
namespace {

constexpr int kBlockSize = 16;
constexpr int kNumBlocks = 64;  // 1024 positions
constexpr int kPrefill = 128;

double CopyBandwidthBytesPerSecond() {
  static const double bw = [] {
    const size_t n = size_t{256} << 20;
    std::vector<char> a(n, 1), b(n, 2);
    double best = 1e30;
    for (int rep = 0; rep < 20; ++rep) {  // best of 20: the least disturbed by other load
      const auto t0 = std::chrono::steady_clock::now();
      std::memcpy(b.data(), a.data(), n);
      const auto t1 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(b.data());
      best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
    }
    return 2.0 * n / best;
  }();
  return bw;
}

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Bytes a decode step at context length `context` reads with float32 weights.
double StepBytes(const ModelConfig& c, int context) {
  const double h = c.hidden_size, q = c.q_size(), kv = c.kv_size(), inter = c.intermediate_size;
  const double per_layer = h * (q + 2 * kv) + q * h + 2 * inter * h + inter * h + 2 * h +
                           (c.attention_bias ? q + 2 * kv : 0) + (c.qk_norm ? 2 * c.head_dim : 0);
  const double weights =
      c.num_hidden_layers * per_layer + static_cast<double>(c.vocab_size) * h + h + h;
  const double kv_cache = 2.0 * c.num_hidden_layers * kv * context;
  return 4.0 * (weights + kv_cache);
}

void BM_Decode(benchmark::State& state, const std::string& relative,
               const std::string& load_format) {
  const std::string path = testing::SharedPath(relative);
  if (path.empty()) {
    state.SkipWithError(("missing ../shared/" + relative).c_str());
    return;
  }
  ModelOptions options;
  options.model_path = path;
  options.load_format = load_format;
  auto model = LoadModel(options);
  if (!model.ok()) {
    state.SkipWithError(model.status().ToString().c_str());
    return;
  }
  CpuBackendOptions backend_options;
  backend_options.block_size = kBlockSize;
  backend_options.num_kv_blocks = kNumBlocks;
  backend_options.num_threads = static_cast<int>(state.range(0));
  auto backend = CreateCpuBackend(*model, backend_options);
  if (!backend.ok()) {
    state.SkipWithError(backend.status().ToString().c_str());
    return;
  }
  const ModelConfig& c = (*model)->config;
  std::vector<int32_t> prompt;
  for (int i = 0; i < kPrefill; ++i) prompt.push_back((i * 7919 + 1) % c.vocab_size);
  if (!(*backend)
           ->Forward(testing::SingleSequenceBatch(prompt, 0, kBlockSize, kNumBlocks, false))
           .ok()) {
    state.SkipWithError("prefill failed");
    return;
  }
  std::vector<SamplingRow> rows(1);
  std::vector<SampleResult> results;
  const int max_pos = std::min(kNumBlocks * kBlockSize, c.max_position_embeddings);
  int pos = kPrefill;
  int32_t token = 1;
  double bytes = 0;
  const double cpu0 = ProcessCpuSeconds();
  for (auto _ : state) {
    if (pos >= max_pos) pos = kPrefill;
    Status s = (*backend)->Forward(
        testing::SingleSequenceBatch({token}, pos, kBlockSize, kNumBlocks, false));
    if (s.ok()) s = (*backend)->Sample(rows, &results);
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    token = results[0].token_id;
    bytes += StepBytes(c, pos + 1);
    ++pos;
  }
  const double cpu_per_step =
      (ProcessCpuSeconds() - cpu0) / static_cast<double>(state.iterations());
  const double bw = CopyBandwidthBytesPerSecond();
  // CPU seconds of all threads per step: on a loaded machine, wall time waits for cores; this
  // does not (up to cache effects).
  state.counters["proc_cpu_ms_per_step"] = cpu_per_step * 1e3;
  const double bytes_per_step = bytes / static_cast<double>(state.iterations());
  state.counters["tok_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["MB_per_step"] = bytes_per_step / 1e6;
  state.counters["copy_GBps"] = bw / 1e9;
  state.counters["floor_tok_per_s"] = bw / bytes_per_step;
}

BENCHMARK_CAPTURE(BM_Decode, stories260K_gguf, std::string("models/stories260K/stories260K.gguf"),
                  std::string("auto"))
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(2.0)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, qwen2_5_0_5b_dummy, std::string("configs/qwen2.5-0.5b-instruct"),
                  std::string("dummy"))
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(20)
    ->UseRealTime();

}  // namespace
}  // namespace kiln

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::cout << "kiln CPU backend decode benchmark: " << std::thread::hardware_concurrency()
            << " hardware threads; Arg = backend threads; floor = bytes per step / copy bandwidth; "
            << "rates use wall-clock time\n";
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
