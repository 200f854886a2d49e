// kiln_tokenizer_bench: single-thread encode throughput of a tokenizer on a text file, the figure
// docs/PERFORMANCE.md compares with HF tokenizers (bench/tokenizer_hf.js runs the Rust library on
// the same file).
//
//   kiln_tokenizer_bench TOKENIZER_DIR_OR_JSON TEXT_FILE [ITERATIONS]
//
// Each iteration encodes the whole file as one string (add_special_tokens = false). It prints the
// load time; "cold": the median of passes on fresh threads (empty per-thread word cache: every
// word goes through BPE); "warm": the median of repeated passes on one thread (every word is a
// cache hit) — in MB/s (10^6 bytes of UTF-8 input per second) and tokens/s; then it checks that
// decoding gives the text back.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tokenizer/tokenizer_factory.h"

namespace {

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// CPU time of the calling thread: on a shared machine it leaves out the time spent waiting for
// a core, which wall time does not.
double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER_DIR_OR_JSON TEXT_FILE [ITERATIONS]\n", argv[0]);
    return 2;
  }
  const int iterations = argc > 3 ? std::max(2, std::atoi(argv[3])) : 20;
  std::ifstream in(argv[2], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", argv[2]);
    return 1;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();

  const double load_cpu = ThreadCpuSeconds();
  auto t0 = std::chrono::steady_clock::now();
  auto loaded = kiln::CreateTokenizerFromJson(argv[1]);
  auto t1 = std::chrono::steady_clock::now();
  const double load_cpu_seconds = ThreadCpuSeconds() - load_cpu;
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
    return 1;
  }
  const kiln::Tokenizer& tok = **loaded;
  std::printf("kiln tokenizer encode benchmark (1 thread) on %s\n", CpuModel().c_str());
  std::printf("tokenizer %s, loaded in %.3f s wall, %.3f s CPU\n", argv[1], Seconds(t0, t1),
              load_cpu_seconds);

  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::vector<double> cold_times, cold_cpu;
  for (int i = 0; i < iterations; ++i) {
    std::thread([&] {
      const double cpu = ThreadCpuSeconds();
      auto a = std::chrono::steady_clock::now();
      const std::vector<int32_t> cold_ids = tok.Encode(text, false);
      cold_times.push_back(Seconds(a, std::chrono::steady_clock::now()));
      cold_cpu.push_back(ThreadCpuSeconds() - cpu);
    }).join();
  }
  std::vector<double> warm_times, warm_cpu;
  std::vector<int32_t> ids = tok.Encode(text, false);
  for (int i = 0; i < iterations; ++i) {
    const double cpu = ThreadCpuSeconds();
    auto a = std::chrono::steady_clock::now();
    ids = tok.Encode(text, false);
    warm_times.push_back(Seconds(a, std::chrono::steady_clock::now()));
    warm_cpu.push_back(ThreadCpuSeconds() - cpu);
  }
  const size_t num_tokens = ids.size();
  const double mb = static_cast<double>(text.size()) / 1e6;
  std::printf("text %s: %zu bytes -> %zu tokens\n", argv[2], text.size(), num_tokens);
  auto report = [&](const char* name, const std::vector<double>& wall,
                    const std::vector<double>& cpu) {
    const double w = median(wall), c = median(cpu);
    std::printf("encode %s, median of %d: %8.2f MB/s %10.0f tokens/s wall | %8.2f MB/s CPU time\n",
                name, iterations, mb / w, num_tokens / w, mb / c);
  };
  report("cold (empty word cache)", cold_times, cold_cpu);
  report("warm (all words cached)", warm_times, warm_cpu);

  auto c = std::chrono::steady_clock::now();
  auto decoded = tok.Decode(ids, false);
  auto d = std::chrono::steady_clock::now();
  if (!decoded.ok() || *decoded != text) {
    std::printf("ROUND TRIP FAILED: decode(encode(text)) != text\n");
    return 1;
  }
  std::printf("decode: %8.2f MB/s (round trip ok)\n", mb / Seconds(c, d));
  return 0;
}
