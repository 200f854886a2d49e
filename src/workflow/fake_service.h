// FakeService: a loopback HTTP service for the workflow tests — an OpenAI-compatible chat
// endpoint whose behaviour is chosen by the request path prefix, plus a generic recorder:
//   /ok/v1/chat/completions     replies "<reply>" (stream or not), echoing the request into
//   last_chat /fail500/v1/...             HTTP 500 with an OpenAI error body /slow/v1/... answers
//   after `slow_ms` (to trigger timeouts) /json/v1/chat/completions   replies `json_reply` /echo
//   returns the request body; /sleep?ms=N sleeps N ms then {"ok":true}
// Every request is counted by path (hits()). Tests only.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/http_server.h"
#include "workflow/spec.h"

namespace kiln::workflow::testing {

class FakeService final {
 public:
  FakeService() {
    server::HttpServerOptions o;
    o.port = 0;
    o.num_threads = 4;
    auto s = server::HttpServer::Create(
        o,
        [this](server::HttpRequest r, std::shared_ptr<server::HttpResponder> w) { Handle(r, w); });
    server_ = std::move(*s);
    server_->Start();
  }
  ~FakeService() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : sleepers_) t.join();  // before the server (their responders use it)
    server_->Stop();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }
  int hits(const std::string& path) {
    std::lock_guard<std::mutex> l(mu_);
    return hits_[path];
  }
  Json last_chat() {
    std::lock_guard<std::mutex> l(mu_);
    return last_chat_;
  }
  std::string reply = " and they lived happily.";
  std::string json_reply = R"({"label":"news","score":0.9})";
  int slow_ms = 3000;

 private:
  void Handle(const server::HttpRequest& r, std::shared_ptr<server::HttpResponder> w) {
    {
      std::lock_guard<std::mutex> l(mu_);
      ++hits_[r.path];
    }
    auto starts = [&](const char* p) { return r.path.rfind(p, 0) == 0; };
    if (starts("/fail500")) {
      return w->Send(500, "application/json", R"({"error":{"message":"upstream exploded"}})");
    }
    if (starts("/sleep") || starts("/slow")) {
      int ms = slow_ms;
      if (const size_t q = r.target.find("ms="); q != std::string::npos)
        ms = std::atoi(r.target.c_str() + q + 3);
      std::lock_guard<std::mutex> l(mu_);
      sleepers_.emplace_back([this, w, ms] {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
        lock.unlock();
        w->Send(200, "application/json", R"({"ok":true})");
      });
      return;
    }
    if (starts("/echo")) return w->Send(200, "application/json", r.body.empty() ? "{}" : r.body);
    if (r.path.find("/v1/chat/completions") != std::string::npos) {
      Json req = Json::parse(r.body, nullptr, false);
      {
        std::lock_guard<std::mutex> l(mu_);
        last_chat_ = req;
      }
      const std::string text = starts("/json") ? json_reply : reply;
      if (req.value("stream", false)) {
        w->StartStream(200, "text/event-stream");
        const size_t half = text.size() / 2;
        for (const std::string& piece : {text.substr(0, half), text.substr(half)}) {
          Json c = {
              {"choices",
               {{{"index", 0}, {"delta", {{"content", piece}}}, {"finish_reason", nullptr}}}}};
          w->Write("data: " + c.dump() + "\n\n");
        }
        Json fin = {
            {"choices", {{{"index", 0}, {"delta", Json::object()}, {"finish_reason", "stop"}}}}};
        w->Write("data: " + fin.dump() + "\n\n");
        Json usage = {
            {"choices", Json::array()},
            {"usage", {{"prompt_tokens", 5}, {"completion_tokens", 7}, {"total_tokens", 12}}}};
        w->Write("data: " + usage.dump() + "\n\ndata: [DONE]\n\n");
        return w->End();
      }
      Json resp = {
          {"choices",
           {{{"index", 0},
             {"message", {{"role", "assistant"}, {"content", text}}},
             {"finish_reason", "stop"}}}},
          {"usage", {{"prompt_tokens", 5}, {"completion_tokens", 7}, {"total_tokens", 12}}}};
      return w->Send(200, "application/json", resp.dump());
    }
    w->Send(404, "application/json", R"({"error":{"message":"no such path"}})");
  }

  std::unique_ptr<server::HttpServer> server_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<std::thread> sleepers_;
  std::map<std::string, int> hits_;
  Json last_chat_;
};

}  // namespace kiln::workflow::testing
