#include "bench/runner.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

namespace kiln::bench {
namespace {

namespace asio = boost::asio;
using json = nlohmann::json;

asio::steady_timer::time_point At(double t_s) {
  return asio::steady_timer::time_point(
      std::chrono::duration_cast<asio::steady_timer::duration>(std::chrono::duration<double>(t_s)));
}

class PointRun final {
 public:
  PointRun(asio::io_context* io, HttpClient* client, Workload* workload, const RunOptions& o)
      : io_(io),
        client_(client),
        workload_(workload),
        o_(o),
        rng_(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(o.point) + 1),
        arrival_timer_(*io),
        ready_timer_(*io),
        stop_timer_(*io),
        scrape_timer_(*io),
        progress_timer_(*io),
        watch_timer_(*io) {}

  PointResult Run() {
    result_.target_rate = o_.rate;
    result_.concurrency = o_.rate > 0 ? 0 : o_.concurrency;
    if (o_.scrape_metrics) {
      Scrape([this] { Begin(); });
    } else {
      Begin();
    }
    io_->restart();
    io_->run();
    if (o_.progress) std::fprintf(stderr, "\n");
    result_.summary = SummarizeRecords(result_.records, o_.slo_e2e_s);
    result_.server = stats_.Build();
    return std::move(result_);
  }

 private:
  double Now() const { return NowSeconds() - t0_; }

  void Begin() {
    t0_ = NowSeconds();
    sending_ = true;
    if (o_.duration_s > 0) {
      stop_timer_.expires_at(At(t0_ + o_.duration_s));
      stop_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) StopSending();
      });
    }
    if (o_.rate > 0) {
      ScheduleArrival();
    } else {
      Dispatch();
    }
    if (o_.scrape_metrics && scraping_) ScheduleScrape();
    if (o_.progress) ScheduleProgress();
    if (o_.server_alive) ScheduleWatch();
  }

  // A dead server: stop sending (the requests in flight fail on their closed connections).
  void ScheduleWatch() {
    watch_timer_.expires_after(std::chrono::milliseconds(200));
    watch_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || finishing_) return;
      if (!o_.server_alive()) return StopSending();
      ScheduleWatch();
    });
  }

  void ScheduleArrival() {
    std::exponential_distribution<double> gap(o_.rate);
    next_arrival_s_ += gap(rng_);
    if (o_.duration_s > 0 && next_arrival_s_ >= o_.duration_s) return;  // the stop timer ends it
    arrival_timer_.expires_at(At(t0_ + next_arrival_s_));
    arrival_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || !sending_) return;
      pending_.push_back({next_arrival_s_, false});
      Dispatch();
      if (sending_) ScheduleArrival();
    });
  }

  bool HaveSlot() const { return o_.rate > 0 ? !pending_.empty() : in_flight_ < o_.concurrency; }

  void Dispatch() {
    while (sending_ && HaveSlot()) {
      if (o_.num_requests > 0 && sent_ >= o_.num_requests) return StopSending();
      const double now = Now();
      double ready_at = std::numeric_limits<double>::infinity();
      // The workload's clock is the steady clock itself: its conversations outlive this point.
      std::optional<BenchRequest> req = workload_->Next(NowSeconds(), &ready_at);
      if (!req) {
        for (auto& p : pending_) p.second = true;
        if (std::isfinite(ready_at)) {
          ready_timer_.expires_at(At(ready_at));
          ready_timer_.async_wait([this](boost::system::error_code ec) {
            if (!ec) Dispatch();
          });
        }
        return;
      }
      double arrival = now;
      if (o_.rate > 0) {
        arrival = pending_.front().first;
        if (pending_.front().second) ++result_.num_delayed_arrivals;
        pending_.pop_front();
      }
      Send(std::move(*req), arrival);
    }
  }

  void Send(BenchRequest req, double arrival) {
    const int64_t index = sent_++;
    ++in_flight_;
    const std::string path = req.chat ? "/v1/chat/completions" : "/v1/completions";
    std::string body = RequestBody(req, o_.model);
    client_->PostStream(path, std::move(body),
                        [this, req = std::move(req), arrival, index](ResponseResult r) {
                          OnDone(req, arrival, index, std::move(r));
                        });
  }

  void OnDone(const BenchRequest& req, double arrival, int64_t index, ResponseResult r) {
    --in_flight_;
    RequestRecord rec;
    rec.index = index;
    rec.point = o_.point;
    rec.arrival_s = arrival;
    rec.start_s = r.start_s - t0_;
    rec.e2e_s = r.end_s - r.start_s;
    if (!r.chunk_times_s.empty()) rec.ttft_s = r.chunk_times_s.front() - r.start_s;
    for (size_t i = 1; i < r.chunk_times_s.size(); ++i) {
      rec.itl_s.push_back(r.chunk_times_s[i] - r.chunk_times_s[i - 1]);
    }
    rec.prompt_tokens = r.prompt_tokens;
    rec.output_tokens = r.completion_tokens >= 0 ? r.completion_tokens
                                                 : static_cast<int64_t>(r.chunk_times_s.size());
    rec.cached_tokens = r.cached_tokens;
    rec.max_tokens = req.max_tokens;
    rec.ok = r.ok;
    rec.error_kind = r.error_kind;
    rec.error_message = r.error_message;
    rec.http_status = r.http_status;
    rec.conversation = req.conversation;
    rec.turn = req.turn;
    result_.records.push_back(std::move(rec));
    workload_->Complete(req, r.text, r.ok, NowSeconds());
    Dispatch();
    MaybeFinish();
  }

  void StopSending() {
    if (!sending_) return;
    sending_ = false;
    result_.num_unsent_arrivals = static_cast<int64_t>(pending_.size());
    pending_.clear();
    arrival_timer_.cancel();
    ready_timer_.cancel();
    stop_timer_.cancel();
    MaybeFinish();
  }

  void MaybeFinish() {
    if (sending_ || in_flight_ > 0 || finishing_) return;
    finishing_ = true;
    scrape_timer_.cancel();
    progress_timer_.cancel();
    watch_timer_.cancel();
    if (o_.progress) PrintProgress();
    if (o_.scrape_metrics && scraping_) Scrape([] {});
  }

  void Scrape(std::function<void()> then) {
    client_->Get("/metrics", [this, then = std::move(then)](int status, std::string body,
                                                            std::string error) {
      const MetricsSnapshot s = ReadSnapshot(body);
      if (!error.empty() || status != 200 || (!s.has_prefix_cache && !s.has_kv_usage)) {
        scraping_ = false;  // not a server whose metrics we read; stop asking
      } else {
        stats_.Add(s);
      }
      then();
    });
  }

  void ScheduleScrape() {
    scrape_timer_.expires_after(std::chrono::duration_cast<asio::steady_timer::duration>(
        std::chrono::duration<double>(o_.scrape_interval_s)));
    scrape_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || finishing_) return;
      Scrape([this] {
        if (!finishing_ && scraping_) ScheduleScrape();
      });
    });
  }

  void ScheduleProgress() {
    progress_timer_.expires_after(std::chrono::seconds(1));
    progress_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || finishing_) return;
      PrintProgress();
      ScheduleProgress();
    });
  }

  void PrintProgress() {
    int64_t ok = 0, failed = 0, out_tokens = 0;
    std::vector<double> e2e;
    for (const RequestRecord& r : result_.records) {
      if (r.ok) {
        ++ok;
        out_tokens += r.output_tokens;
        e2e.push_back(r.e2e_s);
      } else {
        ++failed;
      }
    }
    const double t = std::max(Now(), 1e-9);
    std::fprintf(stderr,
                 "\r  %s %6.1f s | sent %lld ok %lld failed %lld | in flight %d | %.2f req/s | "
                 "p99 e2e %.0f ms | %.0f out tok/s   ",
                 o_.label.c_str(), t, static_cast<long long>(sent_), static_cast<long long>(ok),
                 static_cast<long long>(failed), in_flight_, ok / t, Percentile(e2e, 99) * 1e3,
                 out_tokens / t);
    std::fflush(stderr);
  }

  asio::io_context* io_;
  HttpClient* client_;
  Workload* workload_;
  RunOptions o_;
  std::mt19937_64 rng_;
  asio::steady_timer arrival_timer_, ready_timer_, stop_timer_, scrape_timer_, progress_timer_,
      watch_timer_;
  double t0_ = 0;
  double next_arrival_s_ = 0;
  std::deque<std::pair<double, bool>> pending_;  // (due at, waited for a ready request)
  bool sending_ = false;
  bool finishing_ = false;
  bool scraping_ = true;
  int in_flight_ = 0;
  int64_t sent_ = 0;
  ServerStatsBuilder stats_;
  PointResult result_;
};

}  // namespace

Status RunOptions::Validate() const {
  if (model.empty()) return Status::InvalidArgument("--model is required");
  if ((rate > 0) == (concurrency > 0)) {
    return Status::InvalidArgument("give exactly one of --rate R (> 0) or --concurrency C (> 0)");
  }
  if (!(rate >= 0 && rate <= 1e6)) return Status::InvalidArgument("--rate must be in (0, 1e6]");
  if (concurrency < 0 || concurrency > 100000) {
    return Status::InvalidArgument("--concurrency must be in [1, 100000]");
  }
  if (!(duration_s >= 0 && duration_s <= 1e6) || num_requests < 0) {
    return Status::InvalidArgument("--duration and --num-requests must not be negative");
  }
  if (duration_s == 0 && num_requests == 0) {
    return Status::InvalidArgument("give --duration S or --num-requests N");
  }
  if (!(slo_e2e_s > 0)) return Status::InvalidArgument("--slo-p99-ms must be positive");
  if (!(scrape_interval_s > 0)) return Status::InvalidArgument("scrape interval must be positive");
  return Status::Ok();
}

std::string RequestBody(const BenchRequest& r, const std::string& model) {
  json j = {{"model", model},
            {"stream", true},
            {"stream_options", {{"include_usage", true}}},
            {"max_tokens", r.max_tokens}};
  if (r.ignore_eos) j["ignore_eos"] = true;
  if (r.chat) {
    json messages = json::array();
    for (const ChatMessage& m : r.messages) {
      messages.push_back({{"role", m.role}, {"content", m.content}});
    }
    j["messages"] = std::move(messages);
  } else {
    j["prompt"] = r.prompt;
  }
  // The history holds the server's replies: never let a byte the server sent abort the tool.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

PointSummary SummarizeRecords(const std::vector<RequestRecord>& records, double slo_e2e_s) {
  PointSummary s;
  std::vector<double> ttft, tpot, itl, e2e;
  // The window: first send → the later of the last send and the last successful completion. A
  // failed request (a timeout, a hung connection) ends when it ends; it must not stretch the window
  // over which the successful ones are counted.
  double first = std::numeric_limits<double>::infinity(), last = 0;
  int64_t within_slo = 0, cached = 0, prompt_with_cache_info = 0;
  bool any_cache_info = false;
  for (const RequestRecord& r : records) {
    ++s.num_sent;
    first = std::min(first, r.start_s);
    last = std::max(last, r.start_s);
    if (!r.ok) {
      ++s.num_failed;
      ++s.errors[r.error_kind];
      continue;
    }
    ++s.num_ok;
    last = std::max(last, r.start_s + r.e2e_s);
    e2e.push_back(r.e2e_s);
    if (r.ttft_s >= 0) ttft.push_back(r.ttft_s);
    if (r.output_tokens > 1 && r.ttft_s >= 0) {
      tpot.push_back((r.e2e_s - r.ttft_s) / static_cast<double>(r.output_tokens - 1));
    }
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    if (r.e2e_s <= slo_e2e_s) ++within_slo;
    s.output_tokens += r.output_tokens;
    if (r.prompt_tokens > 0) s.prompt_tokens += r.prompt_tokens;
    if (r.cached_tokens >= 0 && r.prompt_tokens > 0) {
      any_cache_info = true;
      cached += r.cached_tokens;
      prompt_with_cache_info += r.prompt_tokens;
    }
  }
  s.duration_s = s.num_sent > 0 ? std::max(last - first, 0.0) : 0.0;
  if (s.duration_s > 0) {
    s.qps = s.num_ok / s.duration_s;
    s.output_tokens_per_s = s.output_tokens / s.duration_s;
    s.total_tokens_per_s = (s.output_tokens + s.prompt_tokens) / s.duration_s;
    s.goodput = within_slo / s.duration_s;
  }
  if (any_cache_info && prompt_with_cache_info > 0) {
    s.client_cache_hit_rate = static_cast<double>(cached) / prompt_with_cache_info;
  }
  s.ttft_s = Summarize(ttft);
  s.tpot_s = Summarize(tpot);
  s.itl_s = Summarize(itl);
  s.e2e_s = Summarize(e2e);
  return s;
}

PointResult RunPoint(asio::io_context* io, HttpClient* client, Workload* workload,
                     const RunOptions& options) {
  PointRun run(io, client, workload, options);
  return run.Run();
}

}  // namespace kiln::bench
