#include "bench/serve_bench.h"

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "bench/http_client.h"
#include "bench/report.h"

namespace kiln::bench {

using json = nlohmann::json;

Status ServeBenchOptions::Validate() const {
  KILN_RETURN_IF_ERROR(ParseBaseUrl(base_url).status());
  KILN_RETURN_IF_ERROR(workload.Validate());
  if (sweep) {
    if (run.concurrency > 0) {
      return Status::InvalidArgument("--sweep searches Poisson rates: drop --concurrency");
    }
    RunOptions probe = run;
    probe.rate = sweep_options.start_rate;
    KILN_RETURN_IF_ERROR(probe.Validate());
    KILN_RETURN_IF_ERROR(sweep_options.Validate());
  } else {
    KILN_RETURN_IF_ERROR(run.Validate());
  }
  if (warmup_requests < 0 || warmup_concurrency < 1 || warmup_concurrency > 100000) {
    return Status::InvalidArgument(
        "--warmup-requests must be >= 0 and --warmup-concurrency in [1, 100000]");
  }
  if (!(request_timeout_s > 0 && request_timeout_s <= 86400)) {
    return Status::InvalidArgument("--request-timeout must be in (0, 86400] seconds");
  }
  return Status::Ok();
}

json ConfigJson(const ServeBenchOptions& o, const std::string& workload_text) {
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  json c = {{"date", date},
            {"base_url", o.base_url},
            {"model", o.run.model},
            {"workload", workload_text},
            {"workload_kind", o.workload.kind},
            {"seed", o.workload.seed},
            {"arrival", o.sweep || o.run.rate > 0 ? "poisson" : "closed-loop"},
            {"slo_p99_ms", o.run.slo_e2e_s * 1e3},
            {"request_timeout_s", o.request_timeout_s},
            {"sweep", o.sweep}};
  if (o.sweep) {
    c["sweep_start_rate"] = o.sweep_options.start_rate;
    c["sweep_max_points"] = o.sweep_options.max_points;
    c["sweep_tolerance"] = o.sweep_options.rel_tolerance;
    c["sweep_max_error_rate"] = o.sweep_options.max_error_rate;
  } else if (o.run.rate > 0) {
    c["rate"] = o.run.rate;
  } else {
    c["concurrency"] = o.run.concurrency;
  }
  if (o.warmup_requests > 0) {
    c["warmup_requests"] = o.warmup_requests;
    c["warmup_concurrency"] = o.warmup_concurrency;
  }
  if (o.run.duration_s > 0) c["duration_s_per_point"] = o.run.duration_s;
  if (o.run.num_requests > 0) c["num_requests_per_point"] = o.run.num_requests;
  return c;
}

StatusOr<json> RunSeries(const ServeBenchOptions& o, const std::string& name,
                         std::string* requests_log) {
  KILN_RETURN_IF_ERROR(o.Validate());
  KILN_ASSIGN_OR_RETURN(Endpoint endpoint, ParseBaseUrl(o.base_url));
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Workload> workload, CreateWorkload(o.workload));
  boost::asio::io_context io;
  HttpClientOptions client_options;
  client_options.api_key = o.api_key;
  client_options.request_timeout_s = o.request_timeout_s;
  HttpClient client(&io, endpoint, client_options);

  json series = {{"name", name}, {"points", json::array()}};
  std::vector<PointResult> points;
  auto server_ok = [&o]() { return o.server_check ? o.server_check() : Status::Ok(); };
  auto server_alive = [&server_ok]() { return server_ok().ok(); };
  auto run_point = [&](RunOptions ro) -> PointResult {
    ro.point = static_cast<int>(points.size());
    ro.server_alive = server_alive;
    char label[96];
    if (ro.rate > 0) {
      std::snprintf(label, sizeof(label), "[%s point %d: %.3g req/s]", name.c_str(), ro.point,
                    ro.rate);
    } else {
      std::snprintf(label, sizeof(label), "[%s: concurrency %d]", name.c_str(), ro.concurrency);
    }
    ro.label = label;
    PointResult p = RunPoint(&io, &client, workload.get(), ro);
    for (const RequestRecord& r : p.records)
      *requests_log += DumpJson(RecordToJson(r, name)) + "\n";
    points.push_back(std::move(p));
    return points.back();
  };
  if (o.warmup_requests > 0) {
    RunOptions w = o.run;
    w.rate = 0;
    w.concurrency = o.warmup_concurrency;
    w.duration_s = 0;
    w.num_requests = o.warmup_requests;
    w.scrape_metrics = false;
    w.point = -1;
    w.label = "[" + name + " warm-up]";
    w.server_alive = server_alive;
    const PointResult warm = RunPoint(&io, &client, workload.get(), w);
    KILN_RETURN_IF_ERROR(server_ok());
    series["warmup"] = {{"num_sent", warm.summary.num_sent},
                        {"num_ok", warm.summary.num_ok},
                        {"errors", SummaryToJson(warm.summary)["errors"]},
                        {"duration_s", warm.summary.duration_s}};
    std::printf(
        "  warm-up: %lld requests at concurrency %d in %.1f s (%lld failed), not measured\n",
        static_cast<long long>(warm.summary.num_sent), o.warmup_concurrency,
        warm.summary.duration_s, static_cast<long long>(warm.summary.num_failed));
    std::fflush(stdout);
  }
  int best = 0;
  if (o.sweep) {
    SweepOptions so = o.sweep_options;
    so.slo_e2e_s = o.run.slo_e2e_s;
    KILN_ASSIGN_OR_RETURN(SweepOutcome outcome,
                          SloSweep(so, [&](double rate, int) -> StatusOr<PointVerdictInput> {
                            RunOptions ro = o.run;
                            ro.rate = rate;
                            ro.concurrency = 0;
                            const PointResult& p = run_point(ro);
                            KILN_RETURN_IF_ERROR(server_ok());
                            PointVerdictInput v;
                            v.p99_e2e_s = p.summary.e2e_s.p99;
                            v.num_sent = p.summary.num_sent;
                            v.num_failed = p.summary.num_failed;
                            v.num_delayed_arrivals = p.num_delayed_arrivals;
                            return v;
                          }));
    for (size_t i = 0; i < points.size(); ++i) {
      series["points"].push_back(PointToJson(points[i], &outcome.steps[i]));
    }
    best = outcome.found ? outcome.best_step : static_cast<int>(points.size()) - 1;
    series["sweep"] = {{"found", outcome.found},
                       {"best_rate", outcome.best_rate},
                       {"best_point", outcome.best_step},
                       {"first_failing_rate", outcome.first_failing_rate}};
  } else {
    run_point(o.run);
    KILN_RETURN_IF_ERROR(server_ok());
    series["points"].push_back(PointToJson(points[0], nullptr));
  }
  json samples = json::array();
  for (const RequestRecord& r : points[static_cast<size_t>(best)].records) {
    if (r.ok) samples.push_back(r.e2e_s * 1e3);
  }
  series["e2e_samples_ms"] = std::move(samples);
  series["histogram_point"] = best;
  series["workload"] = workload->Describe();
  series["connections_opened"] = client.num_connections_opened();
  return series;
}

Status WriteOutputs(const std::string& out_dir, const json& result,
                    const std::string& requests_log) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Status::IOError("--out: cannot create '" + out_dir + "': " + ec.message());
  KILN_RETURN_IF_ERROR(WriteFile(out_dir + "/result.json", DumpJson(result, 2) + "\n"));
  KILN_RETURN_IF_ERROR(WriteFile(out_dir + "/requests.jsonl", requests_log));
  KILN_RETURN_IF_ERROR(WriteFile(out_dir + "/report.html", RenderHtml(result)));
  return Status::Ok();
}

StatusOr<json> RunServeBench(const ServeBenchOptions& o) {
  KILN_RETURN_IF_ERROR(o.Validate());
  std::string log;
  KILN_ASSIGN_OR_RETURN(json series, RunSeries(o, o.run.model, &log));
  json result = {{"tool", "kiln bench serve"},
                 {"config", ConfigJson(o, series["workload"].get<std::string>())},
                 {"series", json::array({series})},
                 {"requests_log", "requests.jsonl"}};
  std::printf("kiln bench serve — %s, model %s\n  workload %s\n", o.base_url.c_str(),
              o.run.model.c_str(), series["workload"].get<std::string>().c_str());
  std::printf("%s", PointsTable(series, o.run.slo_e2e_s * 1e3).c_str());
  if (o.sweep) {
    const json& sw = series["sweep"];
    if (sw["found"].get<bool>()) {
      std::printf("  max rate with P99 E2E <= %.0f ms: %.3f req/s (lowest failing rate %.3f)\n",
                  o.run.slo_e2e_s * 1e3, sw["best_rate"].get<double>(),
                  sw["first_failing_rate"].get<double>());
    } else {
      std::printf("  no rate met P99 E2E <= %.0f ms\n", o.run.slo_e2e_s * 1e3);
    }
  }
  if (!o.out_dir.empty()) {
    KILN_RETURN_IF_ERROR(WriteOutputs(o.out_dir, result, log));
    std::printf("  wrote %s/result.json, requests.jsonl, report.html\n", o.out_dir.c_str());
  }
  std::fflush(stdout);
  return result;
}

}  // namespace kiln::bench
