// One measurement point of the load generator: requests from a Workload sent to an
// OpenAI-compatible server at a Poisson rate (open loop) or at a fixed concurrency (closed loop),
// for a duration or a number of requests, every request streamed through HttpClient; the
// per-request records, their summary and the server's /metrics figures over the point.
//
// Arrivals: with a rate, arrival times are a Poisson process from `seed` (exponential gaps); an
// arrival that finds no request ready (chat: every conversation in flight or thinking) waits for
// the next one and is counted in num_delayed_arrivals. With a concurrency, a new request is sent as
// soon as one finishes. Sending stops at duration_s (or after num_requests); requests in flight
// then finish (bounded by the client's request timeout). Times in records are seconds from the
// point's start.
//
// Definitions (per request, successful ones): TTFT = first content chunk − send; E2E = end − send;
// ITL = gaps between content chunks; TPOT = (E2E − TTFT) / (output tokens − 1) for ≥ 2 tokens.
// Output tokens are the server's usage.completion_tokens, or the number of content chunks when it
// reports no usage. Goodput = successful requests with E2E ≤ the SLO, per second. Rates are over
// the point's window: first send → the later of the last send and the last successful completion
// (a failed request, e.g. one that ran into the request timeout, does not stretch it).
//
// Thread-compatible: RunPoint runs the io_context on the calling thread until the point ends.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench/http_client.h"
#include "bench/server_stats.h"
#include "bench/stats.h"
#include "bench/workload.h"

namespace kiln::bench {

struct RequestRecord {
  int64_t index = 0;
  int point = 0;
  double arrival_s = 0;  // when it was due (Poisson) / when a slot freed (closed loop)
  double start_s = 0;    // when it was sent
  double ttft_s = -1;    // −1: no content received
  double e2e_s = 0;
  std::vector<double> itl_s;
  int64_t prompt_tokens = -1;  // −1: the server did not say
  int64_t output_tokens = 0;
  int64_t cached_tokens = -1;
  int max_tokens = 0;
  bool ok = false;
  std::string error_kind;
  std::string error_message;
  int http_status = 0;
  int64_t conversation = -1;
  int turn = 0;
};

struct PointSummary {
  int64_t num_sent = 0;
  int64_t num_ok = 0;
  int64_t num_failed = 0;
  std::map<std::string, int64_t> errors;  // kind → count
  double duration_s = 0;  // first send → max(last send, last successful completion)
  double qps = 0;                         // successful requests / s
  double output_tokens_per_s = 0;
  double total_tokens_per_s = 0;  // prompt (where reported) + output
  double goodput = 0;             // successful requests within the SLO / s
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  double client_cache_hit_rate = -1;  // Σ cached / Σ prompt tokens from usage; −1: n/a
  LatencySummary ttft_s;
  LatencySummary tpot_s;
  LatencySummary itl_s;
  LatencySummary e2e_s;
};

PointSummary SummarizeRecords(const std::vector<RequestRecord>& records, double slo_e2e_s);

struct RunOptions {
  std::string model;
  double rate = 0;  // requests/s (Poisson); 0 → closed loop at `concurrency`
  int concurrency = 0;
  double duration_s = 0;     // 0: until num_requests
  int64_t num_requests = 0;  // 0: until duration_s
  double slo_e2e_s = 1.5;
  uint64_t seed = 0;
  bool scrape_metrics = true;
  double scrape_interval_s = 1.0;
  bool progress = false;  // live line on stderr
  std::string label;      // shown in the progress line
  int point = 0;
  // Optional, polled every 0.2 s while the point runs (the preset: is the server process alive?):
  // once it returns false, sending stops and the point ends when the requests in flight do.
  std::function<bool()> server_alive;
  Status Validate() const;
};

struct PointResult {
  double target_rate = 0;
  int concurrency = 0;
  int64_t num_delayed_arrivals = 0;
  int64_t num_unsent_arrivals = 0;  // due before the end but never sent (nothing ready)
  std::vector<RequestRecord> records;
  PointSummary summary;
  ServerStats server;
};

// The JSON body of a request (stream on, usage requested).
std::string RequestBody(const BenchRequest& r, const std::string& model);

PointResult RunPoint(boost::asio::io_context* io, HttpClient* client, Workload* workload,
                     const RunOptions& options);

}  // namespace kiln::bench
