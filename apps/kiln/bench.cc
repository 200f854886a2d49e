// `kiln bench latency|throughput`: offline benchmarks (no HTTP) that print each figure beside the
// physical limit it is measured against, on the device they ran on.
//
//  latency    drives the CUDA backend directly with synthetic ForwardBatches: one prefill of
//             --input-len tokens (model FLOPs vs the measured bf16 GEMM rate), then --output-len
//             decode steps of --batch-size sequences (step time vs the bandwidth floor: weight bytes
//             + KV bytes read per step, over the measured device copy bandwidth), three ways:
//             synchronous (Forward, then Sample waits), pipelined like the engine's async
//             scheduling (step n+1 is launched with deferred tokens before step n's samples are
//             read) and back to back without sampling (device time). GPU idle time between the
//             pieces of device work is measured with CUDA events (ReadDeviceTimeline).
//  throughput runs --num-prompts requests of --input-len random tokens, --output-len generated
//             tokens each (ignore_eos, greedy) through the Engine; output tokens/s.
//  serve      the SLO load generator against any OpenAI-compatible server (src/bench/): a workload
//             (chat | random | fixed | FILE) at a Poisson --rate or a closed-loop --concurrency, or
//             --sweep for the highest rate whose P99 end-to-end latency meets --slo-p99-ms; prints
//             a summary table and writes result.json, requests.jsonl and report.html to --out.
//             --preset production-table --model PATH starts `kiln serve` per configuration (bf16,
//             bf16 + GPU prefix cache, FP8, FP8 + GPU prefix cache, FP8 + GPU + host prefix cache)
//             and prints the configurations side by side.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "flags.h"
#include "kiln/engine.h"
#include "bench/production_table.h"
#include "bench/serve_bench.h"
#include "bench/server_process.h"
#include "model/weights.h"
#include "subcommands.h"

#if defined(KILN_WITH_CUDA)
#define KILN_BENCH_CUDA 1
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device_limits.h"
#endif

namespace kiln::cli {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Parameter counts of a Llama-family config.
struct ModelSize {
  double layer_params = 0;    // all layers (matrices, biases, norms)
  double matmul_params = 0;   // per token FLOPs / 2 of the layers' projections
  double embed_params = 0;
  double lm_head_params = 0;  // 0 when tied (then lm_head reads the embedding)
};

ModelSize SizeOf(const ModelConfig& c) {
  ModelSize s;
  const double h = c.hidden_size, q = c.q_size(), kv = c.kv_size(), inter = c.intermediate_size;
  const double per_layer_mm = h * (q + 2 * kv) + q * h + 3 * inter * h;
  const double per_layer = per_layer_mm + (c.attention_bias ? q + 2 * kv : 0) +
                           (c.qk_norm ? 2.0 * c.head_dim : 0) + 2 * h;
  s.matmul_params = per_layer_mm * c.num_hidden_layers;
  s.layer_params = per_layer * c.num_hidden_layers + h;
  s.embed_params = static_cast<double>(c.vocab_size) * h;
  s.lm_head_params = c.tie_word_embeddings ? 0 : static_cast<double>(c.vocab_size) * h;
  return s;
}

void PrintRow(const char* what, double value, const char* unit, double limit, const char* limit_name,
              const char* goal) {
  std::printf("  %-34s %12.3f %-8s | %-28s %12.3f %-8s | ratio %6.3f  (goal %s)\n", what, value,
              unit, limit_name, limit, unit, limit > 0 ? value / limit : 0.0, goal);
}

void DeclareBenchFlags(Flags* f) {
  DeclareEngineFlags(f);
  f->Value("batch-size", "latency: sequences decoding together (default 1)");
  f->Value("input-len", "prompt tokens per sequence (default 128)");
  f->Value("output-len", "generated tokens per sequence (default 128)");
  f->Value("num-prompts", "throughput: requests (default 1000)");
  f->Value("seed", "random prompt ids seed (default 0)");
}

// The flags both offline benches read: the engine options (CUDA device), `count_flag` (sequences
// or requests), --input-len, --output-len and --seed.
struct BenchArgs {
  EngineOptions options;
  int count = 0;
  int input_len = 0;
  int output_len = 0;
  uint32_t seed = 0;
};

// Prints the problem (a malformed or out-of-range flag) and returns false on bad input.
bool ParseBenchArgs(const Flags& flags, const char* count_flag, int64_t count_default,
                    BenchArgs* args) {
  args->options.device.device = "cuda";
  if (Status st = EngineOptionsFromFlags(flags, &args->options); !st.ok()) {
    std::fprintf(stderr, "kiln bench: %s\n", st.ToString().c_str());
    return false;
  }
  struct IntFlag {
    const char* name;
    int64_t fallback;
    int* out;
  };
  const IntFlag ints[] = {{count_flag, count_default, &args->count},
                          {"input-len", 128, &args->input_len},
                          {"output-len", 128, &args->output_len}};
  for (const IntFlag& f : ints) {
    auto v = flags.GetInt(f.name, f.fallback);
    if (!v.ok()) {
      std::fprintf(stderr, "kiln bench: %s\n", v.status().ToString().c_str());
      return false;
    }
    if (*v < 1 || *v > std::numeric_limits<int32_t>::max()) {
      std::fprintf(stderr, "kiln bench: --%s must be a positive integer, got %lld\n", f.name,
                   static_cast<long long>(*v));
      return false;
    }
    *f.out = static_cast<int>(*v);
  }
  auto seed = flags.GetInt("seed", 0);
  if (!seed.ok()) {
    std::fprintf(stderr, "kiln bench: %s\n", seed.status().ToString().c_str());
    return false;
  }
  args->seed = static_cast<uint32_t>(*seed);
  return true;
}

std::vector<int32_t> RandomIds(std::mt19937* rng, int n, int vocab) {
  std::uniform_int_distribution<int> id(0, std::max(vocab - 1, 0));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& x : ids) x = id(*rng);
  return ids;
}

#ifdef KILN_BENCH_CUDA
int RunLatency(const Flags& flags) {
  BenchArgs args;
  if (!ParseBenchArgs(flags, "batch-size", 1, &args)) return 2;
  EngineOptions& options = args.options;
  const int batch = args.count, input_len = args.input_len, output_len = args.output_len;
  auto limits = cuda::MeasureDeviceLimits(options.device.cuda_device);
  if (!limits.ok()) {
    std::fprintf(stderr, "kiln bench: %s\n", limits.status().ToString().c_str());
    return 1;
  }
  auto model = LoadModel(options.model);
  if (!model.ok()) {
    std::fprintf(stderr, "kiln bench: %s\n", model.status().ToString().c_str());
    return 1;
  }
  const ModelConfig& c = (*model)->config;
  const int bs = options.cache.block_size;
  const int ctx = input_len + output_len;
  const int blocks_per_seq = (ctx + bs - 1) / bs;
  CudaBackendOptions o;
  o.device_id = options.device.cuda_device;
  o.block_size = bs;
  o.num_kv_blocks = static_cast<int64_t>(batch) * blocks_per_seq;
  o.max_num_batched_tokens = std::max(options.scheduler.max_num_batched_tokens, input_len);
  o.max_num_seqs = std::max(batch, 1);
  o.max_model_len = ctx;
  o.enable_cuda_graphs = options.device.enable_cuda_graphs;
  o.dtype = options.model.dtype == "auto" ? "bfloat16" : options.model.dtype;
  o.quantization = options.model.quantization;
  o.quantization_scale = options.model.quantization_scale;
  o.record_device_timeline = true;
  const bool fp8 = o.quantization == "fp8";
  auto created = CreateCudaBackend(*model, o);
  if (!created.ok()) {
    std::fprintf(stderr, "kiln bench: %s\n", created.status().ToString().c_str());
    return 1;
  }
  Backend* backend = created->get();
  std::mt19937 rng(args.seed);

  // Prefill each sequence (one sequence per Forward); the first one is timed separately after a
  // warm-up prefill of sequence 0 (overwritten).
  auto prefill = [&](int seq, double* seconds) -> Status {
    ForwardBatch b;
    b.token_ids = RandomIds(&rng, input_len, c.vocab_size);
    for (int i = 0; i < input_len; ++i) {
      b.positions.push_back(i);
      b.slot_mapping.push_back(static_cast<int64_t>(seq) * blocks_per_seq * bs + i);
    }
    b.cu_seqlens_q = {0, input_len};
    b.seq_lens = {input_len};
    b.max_blocks_per_seq = blocks_per_seq;
    for (int j = 0; j < blocks_per_seq; ++j) b.block_tables.push_back(seq * blocks_per_seq + j);
    b.logits_indices = {input_len - 1};
    std::vector<SampleResult> out;
    SamplingRow greedy;
    const auto t0 = Clock::now();
    KILN_RETURN_IF_ERROR(backend->Forward(b));
    KILN_RETURN_IF_ERROR(backend->Sample(std::span<const SamplingRow>(&greedy, 1), &out));
    *seconds = Seconds(t0, Clock::now());
    return Status::Ok();
  };
  std::vector<double> prefill_times;
  double t = 0;
  for (int seq = 0; seq < batch || prefill_times.size() < 3; ++seq) {
    if (Status st = prefill(seq % batch, &t); !st.ok()) {
      std::fprintf(stderr, "kiln bench: prefill: %s\n", st.ToString().c_str());
      return 1;
    }
    if (seq > 0) prefill_times.push_back(t);  // sequence 0 warms up (GEMM plans)
  }
  const double prefill_s = Median(prefill_times);

  // Decode: output_len steps of `batch` single-token rows at positions input_len + step.
  std::vector<SamplingRow> rows(static_cast<size_t>(batch));
  std::vector<SampleResult> results;
  std::vector<int32_t> next = RandomIds(&rng, batch, c.vocab_size);
  double kv_bytes_sum = 0;
  const double elem = o.dtype == "float32" ? 4.0 : 2.0;
  const double kv_bytes_per_token = 2.0 * c.num_hidden_layers * c.kv_size() * elem;
  // deferred: every row takes the id sampled for its sequence by the previous step.
  auto decode_batch = [&](int step, bool deferred) {
    ForwardBatch b;
    b.is_decode_only = true;
    b.max_blocks_per_seq = blocks_per_seq;
    b.cu_seqlens_q.push_back(0);
    const int pos = input_len + step;
    for (int s = 0; s < batch; ++s) {
      b.token_ids.push_back(deferred ? 0 : next[static_cast<size_t>(s)]);
      if (deferred) b.deferred_tokens.push_back({s, s});
      b.positions.push_back(pos);
      b.slot_mapping.push_back(static_cast<int64_t>(s) * blocks_per_seq * bs + pos);
      b.cu_seqlens_q.push_back(s + 1);
      b.seq_lens.push_back(pos + 1);
      b.logits_indices.push_back(s);
      for (int j = 0; j < blocks_per_seq; ++j) b.block_tables.push_back(s * blocks_per_seq + j);
    }
    return b;
  };
  auto fail = [](const char* what, const Status& st) {
    std::fprintf(stderr, "kiln bench: %s: %s\n", what, st.ToString().c_str());
    return 1;
  };
  // The device timeline since the last read (busy and idle time between pieces of work).
  auto idle_since_last = [&](std::nullptr_t) { return ReadDeviceTimeline(backend, true); };
  if (auto t = idle_since_last(nullptr); !t.ok()) return fail("device timeline", t.status());

  // 1. Synchronous: Forward, then Sample (waits) — what a step cost before async scheduling.
  std::vector<double> step_times;
  for (int step = 0; step < output_len; ++step) {
    const ForwardBatch b = decode_batch(step, false);
    const auto t0 = Clock::now();
    Status st = backend->Forward(b);
    if (st.ok()) st = backend->Sample(rows, &results);
    const double dt = Seconds(t0, Clock::now());
    if (!st.ok()) return fail("decode", st);
    for (int s = 0; s < batch; ++s) next[static_cast<size_t>(s)] = results[static_cast<size_t>(s)].token_id;
    step_times.push_back(dt);
    kv_bytes_sum += static_cast<double>(batch) * (input_len + step + 1) * kv_bytes_per_token;
  }
  auto sync_timeline = idle_since_last(nullptr);
  if (!sync_timeline.ok()) return fail("device timeline", sync_timeline.status());

  // 2. Pipelined (the engine's async scheduling): Forward(n+1) with deferred tokens is queued
  // before WaitSample(n); the host builds the next batch while the device runs this one. The same
  // positions again (the KV of each position is rewritten with the same shapes).
  std::vector<double> pipelined_times;
  {
    Status st = backend->Forward(decode_batch(0, false));
    if (st.ok()) st = backend->SampleAsync(rows);
    auto t_prev = Clock::now();
    for (int step = 1; step < output_len && st.ok(); ++step) {
      const ForwardBatch b = decode_batch(step, true);
      st = backend->Forward(b);
      if (st.ok()) st = backend->WaitSample(&results);
      const auto t = Clock::now();
      if (step > 1) pipelined_times.push_back(Seconds(t_prev, t));  // WaitSample to WaitSample
      t_prev = t;
      if (st.ok()) st = backend->SampleAsync(rows);
    }
    if (st.ok()) st = backend->WaitSample(&results);
    if (!st.ok()) return fail("pipelined decode", st);
  }
  auto pipe_timeline = idle_since_last(nullptr);
  if (!pipe_timeline.ok()) return fail("device timeline", pipe_timeline.status());

  // 3. Device time per decode step: the last step's batch replayed back to back without sampling
  // (Forward does not synchronize), then one sync; host work and the per-step sync are hidden.
  double device_step_s = 0;
  {
    const ForwardBatch b = decode_batch(output_len - 1, false);
    constexpr int kReps = 20;
    Status st = backend->Forward(b);
    if (st.ok()) st = backend->Sample(rows, &results);
    const auto t0 = Clock::now();
    for (int r = 0; r < kReps && st.ok(); ++r) st = backend->Forward(b);
    if (st.ok()) st = backend->Sample(rows, &results);  // synchronizes
    device_step_s = Seconds(t0, Clock::now()) / kReps;
    if (!st.ok()) return fail("back-to-back decode", st);
  }
  const double step_s = Median(step_times);
  const double pipelined_s = Median(pipelined_times);
  auto idle_share = [](const DeviceTimeline& t) {
    return t.busy_s + t.idle_s > 0 ? t.idle_s / (t.busy_s + t.idle_s) : 0.0;
  };
  // Pieces: one Forward and one SampleAsync per step.
  auto idle_per_step = [](const DeviceTimeline& t) {
    return t.idle_s / static_cast<double>(std::max<int64_t>(t.num_pieces / 2, 1));
  };
  const double sync_idle_step = idle_per_step(*sync_timeline);
  const double pipe_idle_step = idle_per_step(*pipe_timeline);

  const ModelSize size = SizeOf(c);
  // Bytes a decode step must read: every layer weight, the final norm, the lm_head (the embedding
  // when tied), the KV of every sequence; the embedding gather itself is negligible.
  // FP8 (--quantization fp8): the layers' projections are 1 byte a weight plus a float32 scale
  // per output row; norms, biases and the lm_head stay in the compute dtype.
  const double layer_rows = static_cast<double>(c.num_hidden_layers) *
                            (c.q_size() + 2.0 * c.kv_size() + c.hidden_size +
                             2.0 * c.intermediate_size + c.hidden_size);
  const double layer_bytes =
      fp8 ? size.matmul_params * 1.0 + layer_rows * 4.0 +
                (size.layer_params - size.matmul_params) * elem
          : size.layer_params * elem;
  const double weight_bytes =
      layer_bytes + (c.tie_word_embeddings ? size.embed_params : size.lm_head_params) * elem;
  const double kv_bytes = kv_bytes_sum / output_len;
  const double bw = limits->copy_bytes_per_s;
  const double floor_s = (weight_bytes + kv_bytes) / bw;
  const double attn_flops = 2.0 * 2.0 * c.num_hidden_layers * c.num_attention_heads * c.head_dim *
                            (static_cast<double>(input_len) * (input_len + 1) / 2.0);
  const double prefill_flops = 2.0 * input_len * size.matmul_params + attn_flops +
                               2.0 * c.vocab_size * c.hidden_size;
  const double peak = limits->bf16_gemm_flops;

  std::printf("kiln bench latency — %s, %.1f GiB; model %s (%s, %d layers, hidden %d), dtype %s, "
              "weights %s, graphs %s\n",
              limits->device_name.c_str(), limits->total_memory_bytes / (1 << 30),
              options.model.model_path.c_str(), c.architecture.c_str(), c.num_hidden_layers,
              c.hidden_size, o.dtype.c_str(),
              fp8 ? ("fp8 " + o.quantization_scale).c_str() : "dense",
              o.enable_cuda_graphs ? "on" : "off");
  std::printf("  measured limits: copy %.0f GB/s (read+write, 1 GiB D2D), bf16 GEMM %d^3 %.0f "
              "TFLOP/s\n",
              bw / 1e9, limits->gemm_size, peak / 1e12);
  std::printf("  batch %d, input %d, output %d; weights read/step %.2f GB, KV read/step %.2f GB\n",
              batch, input_len, output_len, weight_bytes / 1e9, kv_bytes / 1e9);
  auto decode_rows = [&](const char* label, double s, const char* goal, double idle_step,
                         const DeviceTimeline& t) {
    PrintRow(label, s * 1e3, "ms", floor_s * 1e3, "bandwidth floor", goal);
    std::printf("  %-34s output tok/s %.0f; GPU idle %.3f ms/step = %.2f%% of device time "
                "(goal < 3%%)\n",
                "", batch / s, idle_step * 1e3, 100.0 * idle_share(t));
  };
  decode_rows("decode step (pipelined, wall)", pipelined_s, batch == 1 ? "<= 1.15" : "<= 1.25",
              pipe_idle_step, *pipe_timeline);
  decode_rows("decode step (synchronous, wall)", step_s, "(before async scheduling)",
              sync_idle_step, *sync_timeline);
  PrintRow("decode step (20 back-to-back)", device_step_s * 1e3, "ms", floor_s * 1e3,
           "bandwidth floor", "device time, host hidden");
  const double mfu = prefill_flops / prefill_s / peak;
  std::printf("  %-34s %12.3f ms   | %.1f TFLOP/s model FLOPs = %.1f%% of measured GEMM peak "
              "(goal >= 60%% at 8k)\n",
              "prefill (median, wall)", prefill_s * 1e3, prefill_flops / prefill_s / 1e12,
              100.0 * mfu);
  std::printf("RESULT latency batch=%d input=%d output=%d step_ms=%.4f sync_step_ms=%.4f "
              "b2b_step_ms=%.4f floor_ms=%.4f gpu_idle_pct=%.3f sync_gpu_idle_pct=%.3f "
              "prefill_ms=%.3f mfu=%.4f copy_gbps=%.1f gemm_tflops=%.1f\n",
              batch, input_len, output_len, pipelined_s * 1e3, step_s * 1e3, device_step_s * 1e3,
              floor_s * 1e3, 100.0 * idle_share(*pipe_timeline),
              100.0 * idle_share(*sync_timeline), prefill_s * 1e3, mfu, bw / 1e9, peak / 1e12);
  return 0;
}
#endif

int RunThroughput(const Flags& flags) {
  BenchArgs args;
  if (!ParseBenchArgs(flags, "num-prompts", 1000, &args)) return 2;
  EngineOptions& options = args.options;
  const int num_prompts = args.count, input_len = args.input_len, output_len = args.output_len;
  if (options.scheduler.max_model_len == 0) options.scheduler.max_model_len = input_len + output_len;
  auto engine = Engine::Create(options);
  if (!engine.ok()) {
    std::fprintf(stderr, "kiln bench: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  const int vocab = (*engine)->model_info().vocab_size;
  std::mt19937 rng(args.seed);
  std::vector<std::unique_ptr<RequestStream>> streams;
  const auto t0 = Clock::now();
  for (int i = 0; i < num_prompts; ++i) {
    Request r;
    r.prompt_token_ids = RandomIds(&rng, input_len, vocab);
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = output_len;
    r.sampling.ignore_eos = true;
    auto s = (*engine)->Submit(std::move(r));
    if (!s.ok()) {
      std::fprintf(stderr, "kiln bench: submit: %s\n", s.status().ToString().c_str());
      return 1;
    }
    streams.push_back(std::move(s).value());
  }
  int64_t out_tokens = 0;
  RequestOutput out;
  for (auto& s : streams) {
    while (s->Next(&out)) out_tokens += static_cast<int64_t>(out.new_token_ids.size());
  }
  const double secs = Seconds(t0, Clock::now());
  const EngineMetrics m = (*engine)->Metrics();
  std::printf("kiln bench throughput — device %s, model %s, async scheduling %s\n",
              options.device.device.c_str(), options.model.model_path.c_str(),
              options.scheduler.async_scheduling ? "on" : "off");
  std::printf("  %d prompts x (%d in, %d out), greedy, ignore_eos: %.2f s, %.1f requests/s, "
              "%.0f output tok/s, %.0f total tok/s, %lld steps, %lld preemptions\n",
              num_prompts, input_len, output_len, secs, num_prompts / secs, out_tokens / secs,
              (out_tokens + static_cast<double>(num_prompts) * input_len) / secs,
              static_cast<long long>(m.num_steps), static_cast<long long>(m.num_preemptions));
  std::printf("  (reference: TensorRT-LLM publishes 15,220 output tok/s for Llama-3.1-8B FP8 on one "
              "H100 at 1000x1000)\n");
  std::printf("RESULT throughput prompts=%d input=%d output=%d seconds=%.3f output_tok_s=%.1f\n",
              num_prompts, input_len, output_len, secs, out_tokens / secs);
  return 0;
}

void DeclareServeBenchFlags(Flags* f) {
  f->Value("base-url", "server to load (default http://127.0.0.1:8000)");
  f->Value("model", "model name sent in requests; with --preset: the model PATH for kiln serve");
  f->Value("api-key", "sent as 'Authorization: Bearer KEY'");
  f->Value("workload", "chat | random | fixed | FILE.jsonl (default chat)");
  f->Value("rate", "Poisson arrivals, requests/s");
  f->Value("concurrency", "closed loop: requests in flight");
  f->Value("duration", "seconds of arrivals per point (default 60 unless --num-requests)");
  f->Value("num-requests", "requests per point");
  f->Value("slo-p99-ms", "P99 end-to-end latency limit (default 1500)");
  f->Bool("sweep", "find the highest Poisson rate meeting the SLO (bracketing search)");
  f->Value("sweep-start-rate", "first rate of the sweep (default 1)");
  f->Value("sweep-max-rate", "highest rate the sweep tries (default 10000)");
  f->Value("sweep-max-points", "points a sweep may measure (default 10)");
  f->Value("sweep-tolerance", "stop bisecting within this fraction of the best rate (default 0.1)");
  f->Value("max-error-rate", "fraction of failed requests a passing point may have (default 0.01)");
  f->Value("out", "directory for result.json, requests.jsonl, report.html");
  f->Value("warmup-requests",
           "unmeasured requests first, closed loop (default 0; --preset chat: --conversations)");
  f->Value("warmup-concurrency", "concurrency of the warm-up (default 16)");
  f->Value("seed", "workload and arrival seed (default 0)");
  f->Value("request-timeout", "seconds one request may take before it fails (default 600)");
  f->Value("input-len", "random/fixed: prompt words (default 128)");
  f->Value("output-len", "random/fixed: max_tokens, ignore_eos (default 128)");
  f->Value("range-ratio", "random: lengths vary by this fraction (default 0.5)");
  f->Value("conversations", "chat: concurrent conversations (default 1000)");
  f->Value("personas", "chat: system prompts (default 8)");
  f->Value("system-words", "chat: persona lengths MIN-MAX words (default 300-1500)");
  f->Value("user-words", "chat: user turn lengths MIN-MAX words (default 10-120)");
  f->Value("reply-tokens", "chat: reply lengths MIN-MAX tokens (default 24-64)");
  f->Value("turns", "chat: turns per conversation MIN-MAX (default 3-10)");
  f->Value("think-time", "chat: mean think time between turns, seconds (default 5)");
  f->Bool("ignore-eos", "chat: hold replies to their drawn lengths (default on)");
  f->Bool("progress", "live progress line on stderr (default: when stderr is a terminal)");
  f->Bool("metrics", "scrape the server's /metrics for prefix-cache and KV figures (default on)");
  f->Value("preset", "production-table: start kiln serve per configuration and sweep each");
  f->Value("server-args", "--preset: extra kiln serve flags, space-separated");
  f->Value("configs", "--preset: bf16,bf16-pc,fp8,fp8-pc,fp8-pc-host (default all)");
  f->Value("cpu-offload-gb", "--preset: host prefix-cache size of the host-tier row (default 64)");
  f->Value("server-start-timeout", "--preset: seconds a server may take to listen (default 900)");
}

// "A-B" (or a single "A") into min and max.
bool ParseRange(const Flags& flags, const char* name, int* lo, int* hi) {
  if (!flags.Has(name)) return true;
  const std::string v = flags.GetString(name);
  const size_t dash = v.find('-');
  char* end = nullptr;
  const long a = std::strtol(v.c_str(), &end, 10);
  long b = a;
  bool ok =
      end != v.c_str() && (dash == std::string::npos ? *end == '\0' : end == v.c_str() + dash);
  if (ok && dash != std::string::npos) {
    const char* s = v.c_str() + dash + 1;
    b = std::strtol(s, &end, 10);
    ok = end != s && *end == '\0';
  }
  if (!ok || a < 0 || b < a || b > 10000000) {
    std::fprintf(stderr, "kiln bench serve: --%s takes MIN-MAX (0 <= MIN <= MAX), got '%s'\n", name,
                 v.c_str());
    return false;
  }
  *lo = static_cast<int>(a);
  *hi = static_cast<int>(b);
  return true;
}

// Prints the problem and returns false on bad input.
bool ParseServeBenchArgs(const Flags& flags, bench::ServeBenchOptions* o) {
  auto fail = [](const Status& st) {
    std::fprintf(stderr, "kiln bench serve: %s\n", st.ToString().c_str());
    return false;
  };
  o->base_url = flags.GetString("base-url", o->base_url);
  o->api_key = flags.GetString("api-key");
  o->run.model = flags.GetString("model");
  o->out_dir = flags.GetString("out");
  o->sweep = flags.GetBool("sweep", false);
  o->run.progress =
      flags.Has("progress") ? flags.GetBool("progress", true) : isatty(STDERR_FILENO) != 0;
  o->run.scrape_metrics = flags.GetBool("metrics", true);
  const std::string workload = flags.GetString("workload", "chat");
  if (workload == "chat" || workload == "random" || workload == "fixed") {
    o->workload.kind = workload;
  } else {
    o->workload.kind = "file";
    o->workload.path = workload;
  }
  o->workload.ignore_eos = flags.GetBool("ignore-eos", true);
  struct DoubleFlag {
    const char* name;
    double* out;
  };
  double slo_ms = 1500;
  const DoubleFlag doubles[] = {{"rate", &o->run.rate},
                                {"duration", &o->run.duration_s},
                                {"slo-p99-ms", &slo_ms},
                                {"sweep-start-rate", &o->sweep_options.start_rate},
                                {"sweep-max-rate", &o->sweep_options.max_rate},
                                {"sweep-tolerance", &o->sweep_options.rel_tolerance},
                                {"max-error-rate", &o->sweep_options.max_error_rate},
                                {"request-timeout", &o->request_timeout_s},
                                {"range-ratio", &o->workload.range_ratio},
                                {"think-time", &o->workload.think_time_s}};
  for (const DoubleFlag& d : doubles) {
    auto v = flags.GetDouble(d.name, *d.out);
    if (!v.ok()) return fail(v.status());
    *d.out = *v;
  }
  o->run.slo_e2e_s = slo_ms / 1e3;
  o->sweep_options.min_rate = std::min(o->sweep_options.min_rate, o->sweep_options.start_rate);
  struct IntFlag {
    const char* name;
    int64_t fallback;
    int64_t min, max;
  };
  const IntFlag ints[] = {
      {"concurrency", 0, 0, 100000},        {"num-requests", 0, 0, 1LL << 40},
      {"sweep-max-points", 10, 2, 1000},    {"seed", 0, 0, 1LL << 62},
      {"input-len", 128, 1, 10000000},      {"output-len", 128, 1, 10000000},
      {"conversations", 1000, 1, 10000000}, {"personas", 8, 1, 100000},
      {"warmup-requests", 0, 0, 1LL << 40}, {"warmup-concurrency", 16, 1, 100000}};
  constexpr int kNumInts = sizeof(ints) / sizeof(ints[0]);
  int64_t v[kNumInts];
  for (int i = 0; i < kNumInts; ++i) {
    auto x = flags.GetInt(ints[i].name, ints[i].fallback);
    if (!x.ok()) return fail(x.status());
    if (*x < ints[i].min || *x > ints[i].max) {
      std::fprintf(stderr, "kiln bench serve: --%s must be in [%lld, %lld], got %lld\n",
                   ints[i].name, static_cast<long long>(ints[i].min),
                   static_cast<long long>(ints[i].max), static_cast<long long>(*x));
      return false;
    }
    v[i] = *x;
  }
  o->run.concurrency = static_cast<int>(v[0]);
  o->run.num_requests = v[1];
  o->sweep_options.max_points = static_cast<int>(v[2]);
  o->workload.seed = static_cast<uint64_t>(v[3]);
  o->run.seed = static_cast<uint64_t>(v[3]);
  o->workload.input_len = static_cast<int>(v[4]);
  o->workload.output_len = static_cast<int>(v[5]);
  o->workload.num_conversations = static_cast<int>(v[6]);
  o->workload.num_personas = static_cast<int>(v[7]);
  o->warmup_requests = v[8];
  o->warmup_concurrency = static_cast<int>(v[9]);
  if (!ParseRange(flags, "system-words", &o->workload.system_words_min,
                  &o->workload.system_words_max) ||
      !ParseRange(flags, "user-words", &o->workload.user_words_min, &o->workload.user_words_max) ||
      !ParseRange(flags, "reply-tokens", &o->workload.reply_tokens_min,
                  &o->workload.reply_tokens_max) ||
      !ParseRange(flags, "turns", &o->workload.turns_min, &o->workload.turns_max)) {
    return false;
  }
  if (!flags.Has("duration") && !flags.Has("num-requests")) o->run.duration_s = 60;
  return true;
}

// --preset: SIGINT / SIGTERM stop the servers the preset started (SIGTERM, then SIGKILL after a few
// seconds) and exit 128 + the signal; without it they would outlive the tool. (A tool killed by
// SIGKILL takes them along through their death signal, see bench/server_process.h.)
void OnPresetSignal(int sig) {
  const char msg[] = "\nkiln bench serve: interrupted, stopping the server\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
  bench::ServerProcess::TerminateAllFromSignalHandler(3.0);
  _exit(128 + sig);
}

void StopServersOnSignal() {
  struct sigaction sa {};
  sa.sa_handler = OnPresetSignal;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);  // one handler at a time
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Hundreds of connections: lift the soft open-files limit to the hard one.
void RaiseFileLimit() {
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int RunServeBenchCommand(int argc, char** argv) {
  Flags flags;
  DeclareServeBenchFlags(&flags);
  if (argc > 3 && (std::string(argv[3]) == "--help" || std::string(argv[3]) == "-h")) {
    std::fprintf(stderr, "usage: kiln bench serve [flags]\n%s", flags.Usage().c_str());
    return 0;
  }
  if (Status st = flags.Parse(argc, argv, 3); !st.ok()) {
    std::fprintf(stderr, "kiln bench serve: %s\n", st.ToString().c_str());
    return 2;
  }
  bench::ServeBenchOptions options;
  if (!ParseServeBenchArgs(flags, &options)) return 2;
  RaiseFileLimit();
  signal(SIGPIPE, SIG_IGN);
  const std::string preset = flags.GetString("preset");
  if (!preset.empty()) {
    if (preset != "production-table") {
      std::fprintf(stderr, "kiln bench serve: unknown --preset '%s' (production-table)\n",
                   preset.c_str());
      return 2;
    }
    bench::ProductionTableOptions p;
    p.model_path = options.run.model;
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    p.kiln_binary = n > 0 ? std::string(self, static_cast<size_t>(n)) : argv[0];
    std::istringstream args(flags.GetString("server-args"));
    for (std::string a; args >> a;) p.server_args.push_back(a);
    std::istringstream configs(flags.GetString("configs"));
    for (std::string c; std::getline(configs, c, ',');) {
      if (!c.empty()) p.configs.push_back(c);
    }
    auto gb = flags.GetInt("cpu-offload-gb", p.cpu_offload_gb);
    auto start = flags.GetDouble("server-start-timeout", p.server_start_timeout_s);
    if (!gb.ok() || !start.ok()) {
      std::fprintf(stderr, "kiln bench serve: %s\n",
                   (!gb.ok() ? gb.status() : start.status()).ToString().c_str());
      return 2;
    }
    p.cpu_offload_gb = static_cast<int>(std::clamp<int64_t>(*gb, 0, 1 << 30));
    p.server_start_timeout_s = *start;
    if (!flags.Has("workload")) options.workload.kind = "chat";
    if (!flags.Has("warmup-requests") && options.workload.kind == "chat") {
      options.warmup_requests = options.workload.num_conversations;
    }
    options.sweep = true;
    options.run.model = "kiln-bench";
    p.bench = options;
    if (Status st = p.Validate(); !st.ok()) {
      std::fprintf(stderr, "kiln bench serve: %s\n", st.ToString().c_str());
      return 2;
    }
    StopServersOnSignal();
    auto result = bench::RunProductionTable(p);
    if (!result.ok()) {
      std::fprintf(stderr, "kiln bench serve: %s\n", result.status().ToString().c_str());
      return 1;
    }
    bool measured = false;
    for (const auto& s : (*result)["series"]) measured |= !s.contains("error");
    if (!measured) {
      std::fprintf(stderr,
                   "kiln bench serve: no configuration was measured (see the messages above)\n");
      return 1;
    }
    return 0;
  }
  if (Status st = options.Validate(); !st.ok()) {
    std::fprintf(stderr, "kiln bench serve: %s\n", st.ToString().c_str());
    return 2;
  }
  auto result = bench::RunServeBench(options);
  if (!result.ok()) {
    std::fprintf(stderr, "kiln bench serve: %s\n", result.status().ToString().c_str());
    return result.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  int64_t ok = 0;
  for (const auto& p : (*result)["series"][0]["points"])
    ok += p["summary"]["num_ok"].get<int64_t>();
  if (ok == 0) {
    std::fprintf(stderr, "kiln bench serve: no request succeeded (see the errors above)\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace kiln::cli

int RunBench(int argc, char** argv) {
  using namespace kiln::cli;
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: kiln bench latency|throughput|serve [flags]  (--help for flags)\n");
    return 2;
  }
  const std::string mode = argv[2];
  if (mode == "serve") return RunServeBenchCommand(argc, argv);
  Flags flags;
  DeclareBenchFlags(&flags);
  if (mode == "--help" || mode == "-h") {
    std::fprintf(stderr, "%s", flags.Usage().c_str());
    return 0;
  }
  if (kiln::Status st = flags.Parse(argc, argv, 3); !st.ok()) {
    std::fprintf(stderr, "kiln bench: %s\n", st.ToString().c_str());
    return 2;
  }
  if (mode == "latency") {
#ifdef KILN_BENCH_CUDA
    return RunLatency(flags);
#else
    std::fprintf(stderr, "kiln bench latency: needs a CUDA build\n");
    return 1;
#endif
  }
  if (mode == "throughput") return RunThroughput(flags);
  std::fprintf(stderr, "kiln bench: unknown mode '%s' (latency | throughput | serve)\n",
               mode.c_str());
  return 2;
}
