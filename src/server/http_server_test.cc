#include "server/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "server/test_http_client.h"

namespace kiln::server {
namespace {

using test_client::Client;

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpServerOptions options = {}) {
    options.port = 0;
    auto server =
        HttpServer::Create(options, [this](HttpRequest req, std::shared_ptr<HttpResponder> r) {
          Handle(std::move(req), std::move(r));
        });
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    server_->Start();
  }
  void TearDown() override {
    if (server_) server_->Stop();
    for (auto& t : threads_) t.join();
  }

  void Handle(HttpRequest req, std::shared_ptr<HttpResponder> r) {
    if (req.path == "/echo") {
      r->Send(200, "text/plain", req.method + " " + req.body + " " + req.authorization);
    } else if (req.path == "/stream") {
      // Produced from a foreign thread, like engine outputs.
      std::lock_guard<std::mutex> lock(mu_);
      threads_.emplace_back([r] {
        r->StartStream(200, "text/event-stream");
        for (const char* piece : {"data: a\n\n", "data: b\n\n"}) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          r->Write(piece);
        }
        r->End();
      });
    } else if (req.path == "/delayed") {
      std::lock_guard<std::mutex> lock(mu_);
      threads_.emplace_back([r] {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        r->Send(200, "text/plain", "late");
      });
    } else if (req.path == "/flood") {
      r->OnDisconnect([this] { disconnects_++; });
      std::lock_guard<std::mutex> lock(mu_);
      threads_.emplace_back([r] {
        r->StartStream(200, "text/plain");
        for (int i = 0; i < 1024; ++i) r->Write(std::string(64 << 10, 'x'));  // 64 MiB
        r->End();
      });
    } else if (req.path == "/hang") {
      r->OnDisconnect([this] { disconnects_++; });
    } else {
      r->Send(404, "text/plain", "nope");
    }
  }

  std::unique_ptr<HttpServer> server_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::atomic<int> disconnects_{0};
};

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  StartServer();
  Client c(server_->port());
  ASSERT_TRUE(c.connected());
  c.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Length: 3\r\n\r\nabc");
  std::string r1 = c.ReadResponse();
  EXPECT_NE(r1.find("HTTP/1.1 200 OK"), std::string::npos) << r1;
  EXPECT_NE(r1.find("Connection: keep-alive"), std::string::npos);
  EXPECT_NE(r1.find("POST abc Bearer k"), std::string::npos) << r1;
  c.Send("GET /missing?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string r2 = c.ReadResponse();
  EXPECT_NE(r2.find("HTTP/1.1 404 Not Found"), std::string::npos) << r2;
  c.Send("GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string r3 = c.ReadResponse();
  EXPECT_NE(r3.find("Connection: close"), std::string::npos) << r3;
  EXPECT_TRUE(c.PeerClosed());
}

// Regression: the disconnect watch armed for one exchange used to fire when the next request on
// the keep-alive connection arrived, and closed the connection as if the peer had left.
TEST_F(HttpServerTest, KeepAliveDelayedResponsesAreNotMistakenForDisconnects) {
  StartServer();
  Client c(server_->port());
  for (int i = 0; i < 5; ++i) {
    c.Send("GET /delayed HTTP/1.1\r\n\r\n");
    const std::string r = c.ReadResponse();
    ASSERT_NE(r.find("200 OK"), std::string::npos) << "request " << i << ": " << r;
    EXPECT_NE(r.find("late"), std::string::npos);
  }
  EXPECT_EQ(disconnects_, 0);
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  Client c(server_->port());
  c.Send(
      "POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\n1POST /echo HTTP/1.1\r\n"
      "Content-Length: 1\r\n\r\n2");
  EXPECT_NE(c.ReadResponse().find("POST 1"), std::string::npos);
  EXPECT_NE(c.ReadResponse().find("POST 2"), std::string::npos);
}

TEST_F(HttpServerTest, BodyOverLimitIs413) {
  HttpServerOptions o;
  o.max_body_bytes = 1024;
  StartServer(o);
  Client c(server_->port());
  c.Send("POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x'));
  const std::string r = c.ReadResponse();
  EXPECT_NE(r.find("HTTP/1.1 413"), std::string::npos) << r;
  EXPECT_NE(r.find("\"error\""), std::string::npos) << r;
  // Chunked bodies have no Content-Length; the limit applies while reading.
  Client d(server_->port());
  d.Send("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" +
         std::string(0x800, 'y') + "\r\n0\r\n\r\n");
  EXPECT_NE(d.ReadResponse().find("HTTP/1.1 413"), std::string::npos);
}

TEST_F(HttpServerTest, MalformedRequestIs400) {
  StartServer();
  Client c(server_->port());
  c.Send("THIS IS NOT HTTP\r\n\r\n");
  const std::string r = c.ReadResponse();
  EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << r;
}

TEST_F(HttpServerTest, ChunkedStreamingFromAnotherThread) {
  StartServer();
  Client c(server_->port());
  c.Send("GET /stream HTTP/1.1\r\n\r\n");
  const std::string r = c.ReadUntil("0\r\n\r\n");
  EXPECT_NE(r.find("Transfer-Encoding: chunked"), std::string::npos) << r;
  EXPECT_NE(r.find("Content-Type: text/event-stream"), std::string::npos) << r;
  EXPECT_NE(r.find("data: a\n\n"), std::string::npos) << r;
  EXPECT_NE(r.find("data: b\n\n"), std::string::npos) << r;
  // The connection stays usable.
  c.Send("GET /echo HTTP/1.1\r\n\r\n");
  EXPECT_NE(c.ReadResponse().find("200 OK"), std::string::npos);
}

TEST_F(HttpServerTest, PeerDisconnectWhileResponsePendingIsReported) {
  StartServer();
  {
    Client c(server_->port());
    c.Send("GET /hang HTTP/1.1\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(server_->num_pending_exchanges(), 1);
  }
  for (int i = 0; i < 200 && disconnects_ == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(disconnects_, 1);
  EXPECT_EQ(server_->num_pending_exchanges(), 0);
}

TEST_F(HttpServerTest, PeerThatStopsReadingIsCutOffNotBuffered) {
  HttpServerOptions o;
  o.max_pending_write_bytes = 1 << 20;
  StartServer(o);
  Client c(server_->port());
  c.Send("GET /flood HTTP/1.1\r\n\r\n");  // and never read
  for (int i = 0; i < 500 && disconnects_ == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(disconnects_, 1);
  EXPECT_EQ(server_->num_pending_exchanges(), 0);
}

TEST_F(HttpServerTest, SlowHeaderTimesOut) {
  HttpServerOptions o;
  o.read_timeout_s = 0.2;
  StartServer(o);
  Client c(server_->port());
  c.Send("GET /echo HTTP/1.1\r\nHost:");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.PeerClosed());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
}

TEST_F(HttpServerTest, ManyConcurrentStreamsOnTwoThreads) {
  StartServer();
  constexpr int kClients = 200;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Client>(server_->port()));
    clients.back()->Send("GET /stream HTTP/1.1\r\n\r\n");
  }
  int ok = 0;
  for (auto& c : clients) {
    const std::string r = c->ReadUntil("0\r\n\r\n");
    ok += r.find("data: b") != std::string::npos;
  }
  EXPECT_EQ(ok, kClients);
}

TEST_F(HttpServerTest, StopAcceptingClosesListener) {
  StartServer();
  const int port = server_->port();
  server_->StopAccepting();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Client c(port);
  EXPECT_FALSE(c.connected());
}

}  // namespace
}  // namespace kiln::server
