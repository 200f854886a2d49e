// HttpServer: asynchronous HTTP/1.1 transport on Boost.Beast/Asio. A small pool of io threads
// serves many connections; each connection is a chain of async operations on its own strand (no
// thread per connection). Supports keep-alive, a bounded request body (→ 413), header/body read and
// keep-alive idle timeouts, a write timeout (slow readers), full responses and chunked streaming
// responses (SSE), and disconnect detection while a response is pending (a reset, or a write that
// fails, fires HttpResponder::OnDisconnect, so the handler can abort engine work). A half-close
// (the peer's FIN: "done sending") is not a disconnect: the pending response is still written, then
// the connection closes; a peer that closed entirely is therefore noticed at the next write (the
// next SSE chunk, or the full response). HEAD responses carry headers only; HTTP/1.0 peers get
// streams without chunked encoding (ended by closing the connection); a Transfer-Encoding other
// than chunked is answered 501.
//
// Not responsible for routing, auth or JSON: every request goes to the one HttpHandler.
//
// Thread-safety: HttpServer's methods may be called from any thread. An HttpResponder may be used
// from any thread (e.g. the engine's output thread): every method posts to the connection's strand,
// so calls are applied in the order they were made from one thread. Post() runs a function on that
// strand, serialised with the connection's I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/status.h"

namespace kiln::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent, e.g. "/v1/models?x=1"
  std::string path;    // target without the query string
  std::string body;
  std::string authorization;  // the Authorization header, or empty
  bool keep_alive = true;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

class HttpSession;

// The answer side of one request. Exactly one of Send() or StartStream()…End() should be used;
// calls after the exchange completed (or after a disconnect) are ignored.
class HttpResponder final {
 public:
  HttpResponder(std::shared_ptr<HttpSession> session, uint64_t exchange_id);
  ~HttpResponder();
  HttpResponder(const HttpResponder&) = delete;
  HttpResponder& operator=(const HttpResponder&) = delete;

  void Send(int status, std::string content_type, std::string body, HttpHeaders headers = {});
  // Sends the status line and headers with chunked transfer encoding.
  void StartStream(int status, std::string content_type, HttpHeaders headers = {});
  void Write(std::string data);  // one chunk; empty data is ignored
  void End();                    // the final chunk; the exchange completes
  void Post(std::function<void()> fn);
  // Registers `fn` to run once on the strand when the peer disconnects before the exchange
  // completes. Registering after a disconnect runs it right away (on the strand).
  void OnDisconnect(std::function<void()> fn);

 private:
  std::shared_ptr<HttpSession> session_;
  uint64_t exchange_id_;  // which request on the (keep-alive) connection this answers
};

using HttpHandler =
    std::function<void(HttpRequest request, std::shared_ptr<HttpResponder> responder)>;
// Told the status of every reply the transport sends by itself, without the handler (400 malformed,
// 413, 431, 501, 500 after a handler threw), so that metrics count them. Runs on an io thread.
using HttpStatusObserver = std::function<void(int status)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0 → an ephemeral port (see HttpServer::port())
  int num_threads = 2;
  int64_t max_body_bytes = int64_t{64} << 20;  // larger bodies → 413
  int64_t max_header_bytes = 64 << 10;
  double read_timeout_s = 60.0;   // from the first byte of a request to its complete body
  double idle_timeout_s = 65.0;   // keep-alive connections with no request
  double write_timeout_s = 60.0;  // one write to a slow reader
  // A streaming peer that falls this far behind (bytes queued, not yet written) is treated as
  // gone: its request is aborted instead of buffering without bound.
  int64_t max_pending_write_bytes = int64_t{32} << 20;
  Status Validate() const;
};

class HttpServer final {
 public:
  // Binds and listens (errors: IOError naming host:port); serving starts with Start().
  static StatusOr<std::unique_ptr<HttpServer>> Create(const HttpServerOptions& options,
                                                      HttpHandler handler,
                                                      HttpStatusObserver observer = nullptr);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const;
  void Start();          // runs the io threads
  void StopAccepting();  // closes the listener; later responses carry Connection: close
  // Requests whose response has not completed yet.
  int64_t num_pending_exchanges() const;
  int64_t num_open_connections() const;
  void Stop();  // stops the io threads and joins them; idempotent

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::server
