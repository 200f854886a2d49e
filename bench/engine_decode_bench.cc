// engine_decode_bench: batch decode through the real engine step (EngineCore: scheduler, KV
// manager, ModelRunner, sampling rows, outputs) on the CUDA backend, with async scheduling on and
// off, reading the backend's device timeline (CUDA events around every Forward and SampleAsync):
// wall time per decode step and GPU idle time between the pieces of device work (issue 8: GPU
// idle < 3% of step time at batch 64). `kiln bench latency` measures the same at the backend
// level (and the device-time floor); this one includes everything the engine thread does.
//
// Usage: engine_decode_bench --model DIR [--batch 64] [--input-len 1950] [--output-len 80]
//                            [--steps 40]
// DIR is a config.json directory (weights are dummy, bf16, CUDA graphs on). Every request decodes
// greedily with ignore_eos; the timed window starts once every request is decoding (after 4
// warm-up decode steps) and ends after --steps steps or when the batch shrinks.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "engine/engine_core.h"
#include "model/weights.h"

namespace kiln {
namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  int steps = 0;
  double wall_s = 0;
  DeviceTimeline timeline;
};

StatusOr<Result> RunDecode(Backend* backend, int batch, int input_len, int output_len,
                           int max_steps, bool async) {
  const ModelConfig& c = backend->config();
  EngineCoreConfig cc;
  cc.scheduler.max_num_seqs = batch;
  cc.scheduler.max_num_batched_tokens = 8192;
  cc.cache.block_size = backend->block_size();
  cc.cache.num_blocks = backend->num_kv_blocks();
  cc.cache.enable_prefix_caching = false;  // the second run must not reuse the first one's KV
  cc.max_model_len = input_len + output_len;
  cc.vocab_size = c.vocab_size;
  cc.hidden_size = c.hidden_size;
  cc.eos_token_ids = c.eos_token_ids;
  cc.async_scheduling = async;
  EngineCore core(cc, backend);
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> id(0, c.vocab_size - 1);
  for (int i = 0; i < batch; ++i) {
    auto r = std::make_unique<RequestState>();
    r->request_id = "r" + std::to_string(i);
    for (int t = 0; t < input_len; ++t) r->token_ids.push_back(id(rng));
    r->sampling.temperature = 0.0f;
    r->sampling.max_tokens = output_len;
    r->sampling.ignore_eos = true;
    r->seed = static_cast<uint64_t>(i);
    r->arrival_time = Clock::now();
    core.AddRequest(std::move(r));
  }
  std::vector<EngineOutput> outputs;
  auto all_decoding = [&] {
    const ForwardBatch& b = core.model_runner().batch();
    return b.is_decode_only && b.num_seqs() == batch;
  };
  int warm = 0;
  while (core.has_work() && warm < 4) {  // prefill, then 4 decode steps (graph capture)
    core.Step(&outputs);
    outputs.clear();
    if (all_decoding()) ++warm;
  }
  if (warm < 4) return Status::FailedPrecondition("output-len too short to reach full decode");
  // Drain the queue and reset the timeline; one step refills the pipeline before the clock
  // starts (its device work is on the timeline: device figures are per Forward + SampleAsync pair).
  KILN_RETURN_IF_ERROR(ReadDeviceTimeline(backend, true).status());
  core.Step(&outputs);
  outputs.clear();
  Result res;
  const auto t0 = Clock::now();
  while (core.has_work() && res.steps < max_steps) {
    core.Step(&outputs);
    outputs.clear();
    if (!all_decoding()) break;
    ++res.steps;
  }
  res.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  KILN_ASSIGN_OR_RETURN(res.timeline, ReadDeviceTimeline(backend, true));
  while (core.has_work()) {
    core.Step(&outputs);
    outputs.clear();
  }
  return res;
}

int Main(int argc, char** argv) {
  std::string model;
  int batch = 64, input_len = 1950, output_len = 80, steps = 40;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--input-len")) input_len = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--output-len")) output_len = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
  }
  if (model.empty() || batch < 1 || input_len < 1 || output_len < 8 || steps < 1) {
    std::fprintf(stderr,
                 "usage: engine_decode_bench --model DIR [--batch B] [--input-len N] "
                 "[--output-len M >= 8] [--steps S]\n");
    return 2;
  }
  ModelOptions mo;
  mo.model_path = model;
  mo.load_format = "dummy";
  auto loaded = LoadModel(mo);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
    return 1;
  }
  const int ctx = input_len + output_len;
  CudaBackendOptions o;
  o.num_kv_blocks = static_cast<int64_t>(batch) * ((ctx + o.block_size - 1) / o.block_size + 1);
  o.max_num_seqs = batch;
  o.max_model_len = ctx;
  o.record_device_timeline = true;
  auto backend = CreateCudaBackend(*loaded, o);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
    return 1;
  }
  std::printf("engine_decode_bench — model %s (dummy, bf16, graphs on), batch %d, context %d..%d\n",
              model.c_str(), batch, input_len, ctx);
  for (bool async : {true, false, true}) {
    auto r = RunDecode(backend->get(), batch, input_len, output_len, steps, async);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return 1;
    }
    const DeviceTimeline& t = r->timeline;
    const double n = std::max(r->steps, 1);
    const double pairs = static_cast<double>(std::max<int64_t>(t.num_pieces / 2, 1));
    const double share = t.busy_s + t.idle_s > 0 ? t.idle_s / (t.busy_s + t.idle_s) : 0.0;
    std::printf(
        "  async scheduling %-3s: %2d decode steps of %d sequences, wall %.3f ms/step, "
        "device busy %.3f ms/step, GPU idle %.3f ms/step = %.2f%% (goal < 3%%)\n",
        async ? "on" : "off", r->steps, batch, r->wall_s * 1e3 / n, t.busy_s * 1e3 / pairs,
        t.idle_s * 1e3 / pairs, 100.0 * share);
    std::printf(
        "RESULT engine_decode async=%d batch=%d steps=%d wall_ms=%.4f busy_ms=%.4f "
        "idle_ms=%.4f idle_pct=%.3f\n",
        async ? 1 : 0, batch, r->steps, r->wall_s * 1e3 / n, t.busy_s * 1e3 / pairs,
        t.idle_s * 1e3 / pairs, 100.0 * share);
  }
  return 0;
}

}  // namespace
}  // namespace kiln

int main(int argc, char** argv) { return kiln::Main(argc, argv); }
