#include "bench/production_table.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "bench/report.h"
#include "bench/server_process.h"

namespace kiln::bench {

using json = nlohmann::json;

std::vector<ServerConfig> ProductionConfigs(int cpu_offload_gb) {
  const std::string gb = std::to_string(cpu_offload_gb);
  return {
      // bf16 rows pass --quantization none: the default (auto) would measure an FP8 checkpoint's
      // stored FP8 weights under the name "bf16".
      {"bf16",
       "bf16",
       {"--dtype", "bfloat16", "--quantization", "none", "--no-enable-prefix-caching"}},
      {"bf16 + GPU PC",
       "bf16-pc",
       {"--dtype", "bfloat16", "--quantization", "none", "--enable-prefix-caching"}},
      {"FP8",
       "fp8",
       {"--dtype", "bfloat16", "--quantization", "fp8", "--no-enable-prefix-caching"}},
      {"FP8 + GPU PC",
       "fp8-pc",
       {"--dtype", "bfloat16", "--quantization", "fp8", "--enable-prefix-caching"}},
      {"FP8 + GPU + host PC",
       "fp8-pc-host",
       {"--dtype", "bfloat16", "--quantization", "fp8", "--enable-prefix-caching",
        "--cpu-offload-gb", gb}},
  };
}

Status ProductionTableOptions::Validate() const {
  if (model_path.empty()) return Status::InvalidArgument("--model PATH is required");
  if (kiln_binary.empty() || access(kiln_binary.c_str(), X_OK) != 0) {
    return Status::InvalidArgument("cannot run the kiln binary '" + kiln_binary + "'");
  }
  if (cpu_offload_gb < 1 || cpu_offload_gb > 100000) {
    return Status::InvalidArgument("--cpu-offload-gb must be in [1, 100000]");
  }
  const auto all = ProductionConfigs(cpu_offload_gb);
  for (const std::string& key : configs) {
    bool known = false;
    for (const ServerConfig& c : all) known |= c.key == key;
    if (!known) {
      return Status::InvalidArgument("--configs: unknown configuration '" + key +
                                     "' (bf16, bf16-pc, fp8, fp8-pc, fp8-pc-host)");
    }
  }
  if (!(server_start_timeout_s > 0)) {
    return Status::InvalidArgument("--server-start-timeout must be positive");
  }
  if (!bench.sweep) return Status::InvalidArgument("the production table needs the sweep");
  return Status::Ok();
}

StatusOr<json> RunProductionTable(const ProductionTableOptions& o) {
  KILN_RETURN_IF_ERROR(o.Validate());
  std::string out_dir = o.bench.out_dir;
  if (out_dir.empty()) {
    char tmpl[] = "/tmp/kiln-bench-production-XXXXXX";
    if (!mkdtemp(tmpl)) return Status::IOError("cannot create a temporary directory");
    out_dir = tmpl;
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Status::IOError("--out: cannot create '" + out_dir + "': " + ec.message());

  const std::string served = "kiln-bench";
  std::string extra;
  for (const std::string& a : o.server_args) extra += (extra.empty() ? "" : " ") + a;
  json series_all = json::array();
  std::string requests_log;
  std::string workload_text;
  std::printf("kiln bench serve --preset production-table — model %s, extra server flags: %s\n",
              o.model_path.c_str(), extra.empty() ? "(none)" : extra.c_str());
  for (const ServerConfig& c : ProductionConfigs(o.cpu_offload_gb)) {
    if (!o.configs.empty() &&
        std::find(o.configs.begin(), o.configs.end(), c.key) == o.configs.end()) {
      continue;
    }
    std::vector<std::string> argv = {o.kiln_binary,         "serve",  "--model",
                                     o.model_path,          "--port", "0",
                                     "--served-model-name", served};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    argv.insert(argv.end(), o.server_args.begin(), o.server_args.end());
    std::string cmd;
    for (size_t i = 1; i < argv.size(); ++i) cmd += (i > 1 ? " " : "") + argv[i];
    std::printf("== %s: kiln %s\n", c.name.c_str(), cmd.c_str());
    std::fflush(stdout);
    json series;
    ServerProcess server;
    const Status started =
        server.Start(argv, out_dir + "/server-" + c.key + ".log", o.server_start_timeout_s);
    if (!started.ok()) {
      series = {{"name", c.name}, {"error", started.message()}};
      std::printf("  not available: %s\n", started.message().c_str());
    } else {
      ServeBenchOptions b = o.bench;
      b.base_url = server.base_url();
      b.run.model = served;
      b.out_dir.clear();
      b.server_check = [&server] { return server.Poll(); };  // a server that dies fails the row
      const size_t log_size = requests_log.size();
      StatusOr<json> s = RunSeries(b, c.name, &requests_log);
      server.Stop();
      if (!s.ok()) {
        requests_log.resize(log_size);  // no records of a configuration that has no result
        series = {{"name", c.name}, {"error", s.status().message()}};
        std::printf("  failed: %s\n", s.status().message().c_str());
      } else {
        series = std::move(s).value();
        workload_text = series.value("workload", "");
        std::printf("%s", PointsTable(series, b.run.slo_e2e_s * 1e3).c_str());
      }
    }
    series["key"] = c.key;
    series["server_command"] = "kiln " + cmd;
    series_all.push_back(std::move(series));
    std::fflush(stdout);
  }
  json config = ConfigJson(o.bench, workload_text);
  config["preset"] = "production-table";
  config["model"] = o.model_path;
  config["server_extra_args"] = extra;
  config["base_url"] = "(started per configuration)";
  json result = {{"tool", "kiln bench serve --preset production-table"},
                 {"config", config},
                 {"series", std::move(series_all)},
                 {"requests_log", "requests.jsonl"}};
  std::printf("\nproduction table (chat workload, P99 E2E SLO %.0f ms):\n%s",
              o.bench.run.slo_e2e_s * 1e3, ProductionTable(result).c_str());
  KILN_RETURN_IF_ERROR(WriteOutputs(out_dir, result, requests_log));
  std::printf("  wrote %s/result.json, requests.jsonl, report.html, server-*.log\n",
              out_dir.c_str());
  std::fflush(stdout);
  return result;
}

}  // namespace kiln::bench
