// The production-table preset of `kiln bench serve`: for each server configuration (bf16, bf16 +
// GPU prefix cache, FP8, FP8 + GPU prefix cache, FP8 + GPU + host prefix cache) it starts
// `kiln serve` itself with that configuration's flags plus the caller's extra server flags, runs
// the SLO sweep on the chat workload, stops the server, and puts the configurations side by side
// (max QPS under the SLO, output tokens/s, P99, prefix-cache hit rate). A configuration whose
// server does not start (e.g. it rejects a flag because the feature does not exist yet) is reported
// as "not available: <the server's message>", never measured with something else.
//
// The bf16 rows pass --quantization none: an FP8 checkpoint is dequantized, not measured as "bf16".
// A server that dies during its sweep fails its configuration ("the server exited with status N",
// or "was killed by signal N") as soon as that is seen, never measured as connection errors; the
// servers never outlive the tool (see ServerProcess).
//
// Thread-compatible: runs on the calling thread; one server at a time.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/serve_bench.h"
#include "kiln/status.h"

namespace kiln::bench {

struct ServerConfig {
  std::string name;               // column title, e.g. "FP8 + GPU PC"
  std::string key;                // --configs name, e.g. "fp8-pc"
  std::vector<std::string> args;  // flags for `kiln serve`
};

// The preset's configurations, in table order; cpu_offload_gb sizes the host prefix-cache tier.
std::vector<ServerConfig> ProductionConfigs(int cpu_offload_gb);

struct ProductionTableOptions {
  std::string kiln_binary;               // the `kiln` executable to run `serve` with
  std::string model_path;                // --model of the servers
  std::vector<std::string> server_args;  // appended to every server's flags
  std::vector<std::string> configs;      // keys to run (empty: all)
  int cpu_offload_gb = 64;
  double server_start_timeout_s = 900.0;
  ServeBenchOptions bench;  // the sweep (base_url and model are set per server)
  Status Validate() const;
};

// Runs the preset, prints the side-by-side table, writes out_dir (result.json with one series per
// configuration, requests.jsonl, report.html, server-<key>.log).
StatusOr<nlohmann::json> RunProductionTable(const ProductionTableOptions& options);

}  // namespace kiln::bench
