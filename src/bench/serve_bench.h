// `kiln bench serve` as a library: one benchmark against an OpenAI-compatible server (a single
// point at a rate or a concurrency, or an SLO sweep over Poisson rates), producing a "series" (the
// points, the sweep outcome, latency samples) and, in out_dir, result.json, requests.jsonl (the
// per-request log) and report.html. RunServeBench prints the summary table; RunSeries is the part
// the production-table preset reuses for each server configuration.
//
// Thread-compatible: runs on the calling thread (its own io_context).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "bench/runner.h"
#include "bench/slo_search.h"
#include "bench/workload.h"
#include "kiln/status.h"

namespace kiln::bench {

struct ServeBenchOptions {
  std::string base_url = "http://127.0.0.1:8000";
  std::string api_key;
  WorkloadOptions workload;
  RunOptions run;  // model, rate | concurrency, duration | num_requests, slo, seed, ...
  bool sweep = false;
  SweepOptions sweep_options;
  double request_timeout_s = 600.0;
  // Unmeasured requests sent first, closed loop at warmup_concurrency: they put the workload's
  // prefixes (chat: every conversation's first turn) into the server's caches, so the points
  // measure the steady state rather than a cold start.
  int64_t warmup_requests = 0;
  int warmup_concurrency = 16;
  std::string out_dir;  // empty: no files
  // Optional: the server's state (the preset: ServerProcess::Poll). A point stops sending once it
  // fails, and RunSeries returns its error rather than a series measured against a dead server.
  std::function<Status()> server_check;
  Status Validate() const;
};

// The run's configuration as reported (result.json "config", the HTML's configuration table).
nlohmann::json ConfigJson(const ServeBenchOptions& options, const std::string& workload_text);

// Runs one series against options.base_url. Appends its requests to *requests_log (JSON lines).
StatusOr<nlohmann::json> RunSeries(const ServeBenchOptions& options, const std::string& name,
                                   std::string* requests_log);

// Writes result.json, requests.jsonl and report.html into out_dir (created if missing).
Status WriteOutputs(const std::string& out_dir, const nlohmann::json& result,
                    const std::string& requests_log);

// The whole subcommand: run, print the table, write the outputs; returns the result JSON (an error
// status for bad options or unwritable outputs; failed requests are counted in the result).
StatusOr<nlohmann::json> RunServeBench(const ServeBenchOptions& options);

}  // namespace kiln::bench
