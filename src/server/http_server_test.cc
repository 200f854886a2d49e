#include "server/http_server.h"

#include <gtest/gtest.h>

#include <functional>

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
    auto server = HttpServer::Create(
        options,
        [this](HttpRequest req, std::shared_ptr<HttpResponder> r) {
          Handle(std::move(req), std::move(r));
        },
        [this](int status) {
          std::lock_guard<std::mutex> lock(mu_);
          transport_statuses_.push_back(status);
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
    } else if (req.path == "/async") {  // answered from another thread, 1 ms later
      std::lock_guard<std::mutex> lock(mu_);
      threads_.emplace_back([r, body = req.body] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        r->Send(200, "text/plain", "got " + body);
      });
    } else if (req.path == "/async-stream") {  // streamed from another thread
      std::lock_guard<std::mutex> lock(mu_);
      threads_.emplace_back([r, body = req.body] {
        r->StartStream(200, "text/event-stream");
        for (int i = 0; i < 3; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          r->Write("data: " + body + "\n\n");
        }
        r->End();
      });
    } else if (req.path == "/slow") {  // answered 1.2 s later, unless the peer is gone
      r->OnDisconnect([this] { disconnects_++; });
      std::lock_guard<std::mutex> lock(mu_);
      threads_.emplace_back([r] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1200));
        r->Send(200, "text/plain", "slow");
      });
    } else if (req.path == "/hang") {
      r->OnDisconnect([this] { disconnects_++; });
    } else {
      r->Send(404, "text/plain", "nope");
    }
  }

  // A request to /hang (never answered), then `leave` (reset or close): the server reports the
  // disconnect within 3 s and holds no pending exchange.
  void ExpectPendingExchangeAbortedWhenPeer(const std::function<void(Client&)>& leave) {
    const int before = disconnects_;
    {
      Client c(server_->port());
      c.Send("GET /hang HTTP/1.1\r\n\r\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      EXPECT_EQ(server_->num_pending_exchanges(), 1);
      leave(c);
    }
    for (int i = 0; i < 300 && disconnects_ == before; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(disconnects_, before + 1);
    EXPECT_EQ(server_->num_pending_exchanges(), 0);
  }

  std::unique_ptr<HttpServer> server_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::atomic<int> disconnects_{0};
  std::vector<int> transport_statuses_;  // under mu_
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

// A reset (the peer is gone for sure) is reported at once. A FIN is not: it may be a half-close
// (see HalfClosedPeerStillGetsItsResponse); a peer that closed entirely is found out when the
// response is written.
TEST_F(HttpServerTest, PeerResetWhileResponsePendingIsReported) {
  StartServer();
  ExpectPendingExchangeAbortedWhenPeer([](Client& c) { c.Reset(); });
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

// Regression (issue 18): a client that sent its request and then shut down its sending side got no
// response at all; a half-close only means "done sending".
TEST_F(HttpServerTest, HalfClosedPeerStillGetsItsResponse) {
  StartServer();
  for (const char* path : {"/delayed", "/stream", "/echo"}) {
    Client c(server_->port());
    c.Send(std::string("GET ") + path + " HTTP/1.1\r\n\r\n");
    c.ShutdownWrite();
    const std::string r = c.ReadUntil("\x01(until the peer closes)");
    EXPECT_NE(r.find("200 OK"), std::string::npos) << path << ": " << r;
    if (std::string(path) == "/delayed") {  // (the half-close was seen before the reply)
      EXPECT_NE(r.find("Connection: close"), std::string::npos) << r;
      EXPECT_NE(r.find("late"), std::string::npos) << r;
    }
    if (std::string(path) == "/stream") EXPECT_NE(r.find("0\r\n\r\n"), std::string::npos) << r;
  }
  EXPECT_EQ(disconnects_, 0);
}

// A peer that closed entirely (a client that gave up) while its response is pending is found out
// by the interim 100 Continue the server writes after the FIN, within about 50 ms, so the work
// is aborted. A half-closed peer reads the interim responses and then its answer.
TEST_F(HttpServerTest, PeerThatClosedWhileWaitingIsReportedHalfCloseIsNot) {
  StartServer();
  ExpectPendingExchangeAbortedWhenPeer([](Client& c) { c.Close(); });

  Client c(server_->port());
  c.Send("GET /slow HTTP/1.1\r\n\r\n");
  c.ShutdownWrite();
  const test_client::HttpResult r = test_client::ReadHttpResult(c);
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.body, "slow");
  EXPECT_EQ(disconnects_, 1);
}

// Regression (issue 18): about 1% of replies were dropped (no response, or a chunked body cut
// off): the disconnect watch took a read-readiness with available() == 0 for the peer leaving,
// and a stale readiness event (one epoll reported for bytes the session had already read) could
// fire it. 3,200 requests sent in two segments (head, then body), answered or streamed from
// another thread, one per connection and on keep-alive connections: none may be lost. (With the
// old watch this lost a few in about one run of three here.)
TEST_F(HttpServerTest, RequestsInTwoSegmentsAreNeverDropped) {
  StartServer();
  constexpr int kThreads = 8, kPerThread = 400;
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      std::unique_ptr<Client> c;
      for (int i = 0; i < kPerThread; ++i) {
        const bool keep_alive = t % 4 == 3;
        const bool stream = i % 2 == 1;
        if (!keep_alive || c == nullptr) {
          c = std::make_unique<Client>(server_->port());
          c->NoDelay();
        }
        const std::string body = std::to_string(t * kPerThread + i);
        c->Send(std::string("POST ") + (stream ? "/async-stream" : "/async") +
                " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n\r\n");
        c->Send(body);
        const test_client::HttpResult r = test_client::ReadHttpResult(*c);
        const std::string want =
            stream ? "data: " + body + "\n\ndata: " + body + "\n\ndata: " + body + "\n\n"
                   : "got " + body;
        answered += r.status == 200 && r.body == want;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(answered, kThreads * kPerThread);
}

// Regression (issue 18): a HEAD response carried a body, which a keep-alive client then read as
// the start of the next response.
TEST_F(HttpServerTest, HeadResponseHasHeadersOnly) {
  StartServer();
  Client c(server_->port());
  c.Send("HEAD /echo HTTP/1.1\r\n\r\n");
  const std::string head = c.ReadUntil("\r\n\r\n");
  EXPECT_NE(head.find("HTTP/1.1 200 OK"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Length: 6"), std::string::npos) << head;  // as for "HEAD  "
  c.Send("POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
  const std::string next = c.ReadResponse();
  EXPECT_EQ(next.rfind("HTTP/1.1 200 OK", 0), 0u) << next;
  EXPECT_NE(next.find("POST hi"), std::string::npos) << next;
}

// Regression (issue 18): HTTP/1.0 peers were sent chunked encoding, which HTTP/1.0 does not have.
TEST_F(HttpServerTest, Http10StreamIsDelimitedByClose) {
  StartServer();
  Client c(server_->port());
  c.Send("GET /stream HTTP/1.0\r\n\r\n");
  const std::string r = c.ReadUntil("\x01(until the peer closes)");
  EXPECT_EQ(r.find("Transfer-Encoding"), std::string::npos) << r;
  EXPECT_NE(r.find("Connection: close"), std::string::npos) << r;
  EXPECT_NE(r.find("\r\n\r\ndata: a\n\ndata: b\n\n"), std::string::npos) << r;
  EXPECT_EQ(r.size(), r.find("data: b\n\n") + 9) << r;  // nothing after the data
}

// Regression (issue 18): "Transfer-Encoding: gzip" was read as a body-less request and its body
// parsed as a second request. Codings other than chunked are 501, and replies the transport sends
// by itself reach the status observer (the server's metrics).
TEST_F(HttpServerTest, TransferCodingOtherThanChunkedIs501AndObserved) {
  StartServer();
  Client c(server_->port());
  c.Send("POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nGET /echo HTTP/1.1\r\n\r\n");
  const std::string r = c.ReadResponse();
  EXPECT_NE(r.find("HTTP/1.1 501"), std::string::npos) << r;
  EXPECT_NE(r.find("\"error\""), std::string::npos) << r;
  EXPECT_TRUE(c.PeerClosed());  // and no second response
  Client d(server_->port());
  d.Send("NOT HTTP\r\n\r\n");
  EXPECT_NE(d.ReadResponse().find("HTTP/1.1 400"), std::string::npos);
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(transport_statuses_, (std::vector<int>{501, 400}));
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
