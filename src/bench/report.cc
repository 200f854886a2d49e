#include "bench/report.h"

#include <cstdio>
#include <fstream>

#include "bench/report_html.h"

namespace kiln::bench {
namespace {

using json = nlohmann::json;

json LatencyJson(const LatencySummary& l) {
  return {{"count", l.count},      {"mean_ms", l.mean * 1e3}, {"p50_ms", l.p50 * 1e3},
          {"p90_ms", l.p90 * 1e3}, {"p99_ms", l.p99 * 1e3},   {"max_ms", l.max * 1e3}};
}

std::string Num(const json& v, const char* fmt) {
  if (!v.is_number()) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v.get<double>());
  return buf;
}

std::string Pad(const std::string& s, size_t width) {
  return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' ');
}

}  // namespace

std::string DumpJson(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

json SummaryToJson(const PointSummary& s) {
  json errors = json::object();
  for (const auto& [kind, n] : s.errors) errors[kind] = n;
  return {{"num_sent", s.num_sent},
          {"num_ok", s.num_ok},
          {"num_failed", s.num_failed},
          {"errors", errors},
          {"duration_s", s.duration_s},
          {"qps", s.qps},
          {"goodput", s.goodput},
          {"output_tokens", s.output_tokens},
          {"prompt_tokens", s.prompt_tokens},
          {"output_tokens_per_s", s.output_tokens_per_s},
          {"total_tokens_per_s", s.total_tokens_per_s},
          {"client_cache_hit_rate", s.client_cache_hit_rate},
          {"ttft", LatencyJson(s.ttft_s)},
          {"tpot", LatencyJson(s.tpot_s)},
          {"itl", LatencyJson(s.itl_s)},
          {"e2e", LatencyJson(s.e2e_s)}};
}

json ServerStatsToJson(const ServerStats& s) {
  return {{"available", s.available},
          {"server", s.server},
          {"prefix_cache_hit_rate", s.prefix_cache_hit_rate},
          {"prefix_cache_hit_tokens", s.prefix_cache_hit_tokens},
          {"prefix_cache_query_tokens", s.prefix_cache_query_tokens},
          {"kv_usage_mean", s.kv_usage_mean},
          {"kv_usage_max", s.kv_usage_max},
          {"num_scrapes", s.num_scrapes}};
}

json RecordToJson(const RequestRecord& r, const std::string& series) {
  return {{"series", series},
          {"point", r.point},
          {"index", r.index},
          {"arrival_s", r.arrival_s},
          {"start_s", r.start_s},
          {"ttft_s", r.ttft_s},
          {"e2e_s", r.e2e_s},
          {"itl_s", r.itl_s},
          {"prompt_tokens", r.prompt_tokens},
          {"output_tokens", r.output_tokens},
          {"cached_tokens", r.cached_tokens},
          {"max_tokens", r.max_tokens},
          {"ok", r.ok},
          {"error_kind", r.error_kind},
          {"error_message", r.error_message},
          {"http_status", r.http_status},
          {"conversation", r.conversation},
          {"turn", r.turn}};
}

json PointToJson(const PointResult& p, const SweepStep* step) {
  json j = {{"target_rate", p.target_rate},
            {"concurrency", p.concurrency},
            {"num_delayed_arrivals", p.num_delayed_arrivals},
            {"num_unsent_arrivals", p.num_unsent_arrivals},
            {"summary", SummaryToJson(p.summary)},
            {"server", ServerStatsToJson(p.server)}};
  if (step) {
    j["passes"] = step->passes;
    j["reason"] = step->reason;
  }
  return j;
}

std::string PointsTable(const json& series, double slo_ms) {
  std::string out;
  const std::string head =
      "  rate/conc  sent    ok  fail    QPS goodput out_tok/s tot_tok/s | TTFT p50/p90/p99 ms"
      "    | TPOT p50/p99 ms | ITL p99 | E2E p50/p90/p99 ms     | hit%   kv% | SLO " +
      Num(json(slo_ms), "%.0f") + " ms\n";
  out += head;
  for (const json& p : series.value("points", json::array())) {
    const json& s = p["summary"];
    const json& sv = p["server"];
    char load[32];
    if (p.value("target_rate", 0.0) > 0) {
      std::snprintf(load, sizeof(load), "%.3g/s", p["target_rate"].get<double>());
    } else {
      std::snprintf(load, sizeof(load), "c=%d", p.value("concurrency", 0));
    }
    double hit = sv.value("prefix_cache_hit_rate", -1.0);
    if (hit < 0) hit = s.value("client_cache_hit_rate", -1.0);
    char line[512];
    std::snprintf(
        line, sizeof(line),
        "  %-9s %5lld %5lld %5lld %6.2f %7.2f %9.1f %9.1f | %6.0f %6.0f %6.0f | %6.1f %6.1f | "
        "%6.1f | %6.0f %6.0f %6.0f | %5s %5s | %s\n",
        load, s["num_sent"].get<long long>(), s["num_ok"].get<long long>(),
        s["num_failed"].get<long long>(), s["qps"].get<double>(), s["goodput"].get<double>(),
        s["output_tokens_per_s"].get<double>(), s["total_tokens_per_s"].get<double>(),
        s["ttft"]["p50_ms"].get<double>(), s["ttft"]["p90_ms"].get<double>(),
        s["ttft"]["p99_ms"].get<double>(), s["tpot"]["p50_ms"].get<double>(),
        s["tpot"]["p99_ms"].get<double>(), s["itl"]["p99_ms"].get<double>(),
        s["e2e"]["p50_ms"].get<double>(), s["e2e"]["p90_ms"].get<double>(),
        s["e2e"]["p99_ms"].get<double>(), hit >= 0 ? Num(json(100 * hit), "%.1f").c_str() : "-",
        sv.value("kv_usage_mean", -1.0) >= 0
            ? Num(json(100 * sv["kv_usage_mean"].get<double>()), "%.1f").c_str()
            : "-",
        p.contains("passes")
            ? (p["passes"].get<bool>() ? "pass" : "FAIL: " + p["reason"].get<std::string>()).c_str()
            : "");
    out += line;
    if (!s["errors"].empty()) out += "             errors: " + DumpJson(s["errors"]) + "\n";
  }
  return out;
}

std::string ProductionTable(const json& result) {
  const json& all = result.value("series", json::array());
  const double slo_ms = result["config"].value("slo_p99_ms", 1500.0);
  std::vector<std::vector<std::string>> cols;
  std::vector<std::string> labels = {"",
                                     "max QPS, P99 E2E <= " + Num(json(slo_ms), "%.0f") + " ms",
                                     "output tokens/s at that rate",
                                     "P99 E2E ms at that rate",
                                     "P99 TTFT ms at that rate",
                                     "prefix-cache hit rate"};
  std::string notes;
  for (const json& s : all) {
    std::vector<std::string> c = {s.value("name", "?")};
    if (s.contains("error")) {
      c.insert(c.end(), {"not available", "", "", "", ""});
      notes +=
          "  " + s.value("name", "?") + ": not available: " + s["error"].get<std::string>() + "\n";
    } else if (!s["sweep"].value("found", false)) {
      c.insert(c.end(), {"none passes", "", "", "", ""});
    } else {
      const json& p = s["points"][s["sweep"]["best_point"].get<int>()];
      const json& sm = p["summary"];
      double hit = p["server"].value("prefix_cache_hit_rate", -1.0);
      if (hit < 0) hit = sm.value("client_cache_hit_rate", -1.0);
      c.push_back(Num(s["sweep"]["best_rate"], "%.2f"));
      c.push_back(Num(sm["output_tokens_per_s"], "%.1f"));
      c.push_back(Num(sm["e2e"]["p99_ms"], "%.0f"));
      c.push_back(Num(sm["ttft"]["p99_ms"], "%.0f"));
      c.push_back(hit >= 0 ? Num(json(100 * hit), "%.1f%%") : "n/a");
    }
    cols.push_back(std::move(c));
  }
  std::string out;
  for (size_t row = 0; row < labels.size(); ++row) {
    std::string line = Pad(labels[row], 34);
    for (const auto& c : cols) line += Pad(c[row], 16);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out + notes;
}

std::string RenderHtml(const json& result) {
  std::string data = result.dump(-1, ' ', true, json::error_handler_t::replace);
  std::string safe;
  safe.reserve(data.size());
  for (char c : data) {
    if (c == '<') {
      safe += "\\u003c";
    } else {
      safe += c;
    }
  }
  std::string html = kReportHtmlTemplate;
  const std::string marker = "__KILN_BENCH_DATA__";
  html.replace(html.find(marker), marker.size(), safe);
  return html;
}

Status WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IOError("cannot write '" + path + "'");
  out << contents;
  out.close();
  if (!out) return Status::IOError("error writing '" + path + "'");
  return Status::Ok();
}

}  // namespace kiln::bench
