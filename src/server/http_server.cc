#include "server/http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <optional>
#include <thread>

#include "common/logging.h"

namespace kiln::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

std::chrono::steady_clock::duration Seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

std::string StatusLine(int status) {
  const auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
}

boost::beast::string_view TrimOws(boost::beast::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string HexSize(size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%zx\r\n", n);
  return buf;
}

}  // namespace

// What every session shares with the server.
struct ServerShared {
  HttpServerOptions options;
  HttpHandler handler;
  HttpStatusObserver observe_status;  // may be empty
  std::atomic<bool> draining{false};
  std::atomic<int64_t> pending_exchanges{0};
  std::atomic<int64_t> open_connections{0};
};

// One TCP connection. All members are touched only on the connection's strand.
class HttpSession final : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, std::shared_ptr<ServerShared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)), probe_timer_(stream_.get_executor()) {
    ++shared_->open_connections;
  }
  ~HttpSession() {
    if (exchange_active_) --shared_->pending_exchanges;
    --shared_->open_connections;
  }

  void Run() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
  }

  void Post(std::function<void()> fn) { net::post(stream_.get_executor(), std::move(fn)); }

  // ---- responder operations (strand) ----

  void Send(uint64_t id, int status, const std::string& content_type, std::string body,
            const HttpHeaders& headers) {
    if (!Accepting(id)) return;
    accepting_writes_ = false;
    std::string head = StatusLine(status);
    AppendHeaders(&head, content_type, headers);
    head += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    if (!head_request_) head += body;  // a HEAD response has the headers of a GET, no body
    completing_ = true;
    Enqueue(std::move(head));
  }

  void StartStream(uint64_t id, int status, const std::string& content_type,
                   const HttpHeaders& headers) {
    if (!Accepting(id) || streaming_) return;
    streaming_ = true;
    // HTTP/1.0 has no chunked encoding: the body runs until the connection closes.
    if (http10_) keep_alive_ = false;
    std::string head = StatusLine(status);
    AppendHeaders(&head, content_type, headers);
    head += "Cache-Control: no-cache\r\n";
    head += http10_ ? "\r\n" : "Transfer-Encoding: chunked\r\n\r\n";
    Enqueue(std::move(head));
  }

  void WriteChunk(uint64_t id, std::string data) {
    if (!Accepting(id) || !streaming_ || data.empty() || head_request_) return;
    if (http10_) return Enqueue(std::move(data));
    std::string chunk = HexSize(data.size());
    chunk += data;
    chunk += "\r\n";
    Enqueue(std::move(chunk));
  }

  void End(uint64_t id) {
    if (!Accepting(id) || !streaming_) return;
    accepting_writes_ = false;
    completing_ = true;
    Enqueue(http10_ || head_request_ ? std::string() : std::string("0\r\n\r\n"));
  }

  void SetOnDisconnect(uint64_t id, std::function<void()> fn) {
    if (id != exchange_id_) return;
    if (disconnected_) {
      fn();
      return;
    }
    on_disconnect_ = std::move(fn);
  }

 private:
  void Observe(int status) {
    if (shared_->observe_status) shared_->observe_status(status);
  }

  bool Accepting(uint64_t id) const {
    return id == exchange_id_ && exchange_active_ && accepting_writes_ && !disconnected_;
  }

  void AppendHeaders(std::string* head, const std::string& content_type,
                     const HttpHeaders& headers) {
    if (shared_->draining) keep_alive_ = false;
    *head += "Server: kiln\r\n";
    if (!content_type.empty()) *head += "Content-Type: " + content_type + "\r\n";
    for (const auto& [k, v] : headers) *head += k + ": " + v + "\r\n";
    *head += keep_alive_ ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  }

  // ---- reading ----

  void ReadHeader() {
    if (shared_->draining && exchange_id_ > 0) return Close();
    parser_.emplace();
    parser_->body_limit(static_cast<uint64_t>(shared_->options.max_body_bytes));
    parser_->header_limit(static_cast<uint32_t>(shared_->options.max_header_bytes));
    stream_.expires_after(Seconds(exchange_id_ == 0 ? shared_->options.read_timeout_s
                                                    : shared_->options.idle_timeout_s));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    stream_.expires_after(Seconds(shared_->options.read_timeout_s));
    const auto& req = parser_->get();
    const auto length = parser_->content_length();
    if (length && *length > static_cast<uint64_t>(shared_->options.max_body_bytes)) {
      return RejectAndClose(413, "request body of " + std::to_string(*length) +
                                     " bytes exceeds the limit of " +
                                     std::to_string(shared_->options.max_body_bytes) + " bytes");
    }
    // Only chunked is understood (RFC 9112 §6.1: an unknown coding → 501). Reading the body of
    // "Transfer-Encoding: gzip" as if it had none would parse that body as the next request.
    const auto te = req.find(http::field::transfer_encoding);
    if (te != req.end() && !beast::iequals(TrimOws(te->value()), "chunked")) {
      return RejectAndClose(501, "Transfer-Encoding other than chunked is not supported");
    }
    auto expect = req.find(http::field::expect);
    if (expect != req.end() && beast::iequals(expect->value(), "100-continue")) {
      auto msg = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
      net::async_write(stream_, net::buffer(*msg),
                       [self = shared_from_this(), msg](beast::error_code wec, size_t) {
                         if (wec) return self->Close();
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return RejectAndClose(413, "request body exceeds the limit of " +
                                     std::to_string(shared_->options.max_body_bytes) + " bytes");
    }
    if (ec == http::error::header_limit) {
      return RejectAndClose(431, "request headers are too large");
    }
    if (ec.category() == beast::error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return RejectAndClose(400, "malformed HTTP request");
    }
    Close();  // EOF, timeout, reset
  }

  // A transport-level error response, then close (no handler involved).
  void RejectAndClose(int status, const std::string& message) {
    exchange_active_ = true;
    accepting_writes_ = true;
    ++shared_->pending_exchanges;
    ++exchange_id_;
    keep_alive_ = false;
    head_request_ = false;
    std::string type = status == 413 ? "request_too_large" : "invalid_request_error";
    std::string body = "{\"error\":{\"message\":\"" + message + "\",\"type\":\"" + type +
                       "\",\"param\":null,\"code\":null}}";
    Observe(status);
    Send(exchange_id_, status, "application/json", std::move(body), {});
  }

  void OnBody(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    stream_.expires_never();
    auto msg = parser_->release();
    HttpRequest request;
    request.method = std::string(msg.method_string());
    request.target = std::string(msg.target());
    const auto q = request.target.find('?');
    request.path = q == std::string::npos ? request.target : request.target.substr(0, q);
    request.body = std::move(msg.body());
    auto auth = msg.find(http::field::authorization);
    if (auth != msg.end()) request.authorization = std::string(auth->value());
    request.keep_alive = msg.keep_alive();
    keep_alive_ = request.keep_alive && !shared_->draining;
    head_request_ = msg.method() == http::verb::head;
    http10_ = msg.version() < 11;

    ++exchange_id_;
    exchange_active_ = true;
    accepting_writes_ = true;
    streaming_ = false;
    completing_ = false;
    on_disconnect_ = nullptr;
    ++shared_->pending_exchanges;
    auto responder = std::make_shared<HttpResponder>(shared_from_this(), exchange_id_);
    try {
      shared_->handler(std::move(request), responder);
    } catch (const std::exception& e) {
      KILN_LOG(ERROR) << "request handler threw: " << e.what();
      Observe(500);
      Send(exchange_id_, 500, "application/json",
           "{\"error\":{\"message\":\"internal error\",\"type\":\"internal_error\","
           "\"param\":null,\"code\":null}}",
           {});
    }
    if (exchange_active_) Watch();
  }

  // Reads from the socket while a response is pending, to learn whether the peer left. Only a
  // read tells: readiness alone is no evidence (a readiness event can be stale, and taking it with
  // available() == 0 for a disconnect dropped about 1% of replies). What the read returns:
  //   - an error (reset): the peer is gone → OnPeerGone (the handler aborts its work);
  //   - EOF: the peer half-closed ("done sending", e.g. shutdown(SHUT_WR)) or closed entirely: the
  //     two look the same until something is written. The response is still written, and the
  //     connection closes after it; while a response has not started, interim
  //     "HTTP/1.1 100 Continue" responses are written (ProbeAfterEof) so that a peer that closed
  //     entirely (a client that timed out) fails a write → OnPeerGone → the work is aborted
  //     instead of running to max_tokens. HTTP/1.1 clients skip 1xx responses (RFC 9110 §15.2);
  //     HTTP/1.0 peers are not probed;
  //   - bytes: a pipelined request, kept in buffer_ and read after this response.
  void Watch() {
    if (watching_ || disconnected_ || peer_eof_) return;
    watching_ = true;
    watch_buf_.resize(4096);
    stream_.socket().async_read_some(
        net::buffer(watch_buf_),
        [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnWatchRead(ec, n); });
  }

  void OnWatchRead(beast::error_code ec, size_t n) {
    watching_ = false;
    if (n > 0) {
      auto dst = buffer_.prepare(n);
      net::buffer_copy(dst, net::buffer(watch_buf_.data(), n));
      buffer_.commit(n);
    }
    if (disconnected_) return;
    if (ec == net::error::eof) {
      peer_eof_ = true;
      keep_alive_ = false;
      if (exchange_active_ && !http10_) {
        probes_sent_ = 0;
        ProbeAfterEof();
      }
    } else if (ec && ec != net::error::operation_aborted) {
      if (exchange_active_) return OnPeerGone();
      peer_eof_ = true;
      keep_alive_ = false;
    }
    if (resume_read_) {  // the exchange completed while this read was pending
      resume_read_ = false;
      return keep_alive_ ? ReadHeader() : Close();
    }
    // Bytes: not watched further (the pipelined request waits in buffer_ for this response).
    if (!ec && n == 0 && exchange_active_ && !completing_) Watch();
  }

  // One interim response while the exchange has written nothing yet, then again after 50 ms (the
  // reset a closed peer answers the first one with fails the second) and every second after.
  void ProbeAfterEof() {
    if (!exchange_active_ || disconnected_ || streaming_ || completing_ || !accepting_writes_)
      return;
    Enqueue("HTTP/1.1 100 Continue\r\n\r\n");
    probe_timer_.expires_after(probes_sent_++ == 0 ? std::chrono::milliseconds(50)
                                                   : std::chrono::milliseconds(1000));
    probe_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->ProbeAfterEof();
    });
  }

  void OnPeerGone() {
    if (disconnected_) return;
    probe_timer_.cancel();
    disconnected_ = true;
    write_queue_.clear();
    beast::error_code ec;
    stream_.socket().close(ec);
    if (exchange_active_) {
      exchange_active_ = false;
      --shared_->pending_exchanges;
      if (auto fn = std::move(on_disconnect_)) {
        on_disconnect_ = nullptr;
        fn();
      }
    }
  }

  // ---- writing ----

  void Enqueue(std::string data) {
    pending_write_bytes_ += static_cast<int64_t>(data.size());
    if (pending_write_bytes_ > shared_->options.max_pending_write_bytes) {
      KILN_LOG(WARNING) << "peer too slow (" << pending_write_bytes_
                        << " bytes unsent); closing the connection";
      return OnPeerGone();
    }
    write_queue_.push_back(std::move(data));
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (disconnected_) return;
    pending_write_bytes_ = 0;
    for (const auto& q : write_queue_) pending_write_bytes_ += static_cast<int64_t>(q.size());
    if (write_queue_.empty()) {
      writing_ = false;
      if (completing_) FinishExchange();
      return;
    }
    writing_ = true;
    // Coalesce queued chunks into one write.
    if (write_queue_.size() > 1) {
      std::string merged;
      for (auto& s : write_queue_) merged += s;
      write_queue_.clear();
      write_queue_.push_back(std::move(merged));
    }
    stream_.expires_after(Seconds(shared_->options.write_timeout_s));
    net::async_write(stream_, net::buffer(write_queue_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->stream_.expires_never();
                       if (ec) {
                         self->writing_ = false;
                         return self->OnPeerGone();
                       }
                       if (!self->write_queue_.empty()) self->write_queue_.pop_front();
                       self->WriteNext();
                     });
  }

  void FinishExchange() {
    if (!exchange_active_) return;
    probe_timer_.cancel();
    exchange_active_ = false;
    completing_ = false;
    --shared_->pending_exchanges;
    on_disconnect_ = nullptr;
    if (shared_->draining || peer_eof_) keep_alive_ = false;
    if (watching_) {  // one read at a time: go on when the watch read ends (cancelled now)
      resume_read_ = true;
      beast::error_code ec;
      stream_.socket().cancel(ec);
      return;
    }
    keep_alive_ ? ReadHeader() : Close();
  }

  // Graceful close: stop sending, drain what the peer still sends for a moment (so it reads our
  // final response instead of a reset), then close.
  void Close() {
    if (disconnected_) return;
    disconnected_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) {
      stream_.socket().close(ec);
      return;
    }
    stream_.expires_after(std::chrono::seconds(2));
    Drain();
  }

  void Drain() {
    drain_buf_.resize(4096);
    stream_.async_read_some(net::buffer(drain_buf_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) {
                                beast::error_code cec;
                                self->stream_.socket().close(cec);
                                return;
                              }
                              self->Drain();
                            });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<ServerShared> shared_;
  uint64_t exchange_id_ = 0;
  bool exchange_active_ = false;   // a request was read and its response is not complete
  bool accepting_writes_ = false;  // Send/StartStream/Write/End still allowed
  bool streaming_ = false;
  bool completing_ = false;  // the last bytes of the response are queued
  bool keep_alive_ = true;
  bool disconnected_ = false;
  bool watching_ = false;
  bool resume_read_ = false;   // read the next request when the watch read completes
  bool peer_eof_ = false;      // the peer half-closed: answer the current request, then close
  bool head_request_ = false;  // HEAD: headers only
  bool http10_ = false;        // HTTP/1.0 peer: no chunked encoding
  bool writing_ = false;
  std::deque<std::string> write_queue_;
  int64_t pending_write_bytes_ = 0;  // queued + in flight
  std::function<void()> on_disconnect_;
  std::string drain_buf_;
  std::string watch_buf_;
  net::steady_timer probe_timer_;  // ProbeAfterEof
  int probes_sent_ = 0;
};

// ---- HttpResponder ---------------------------------------------------------------------------

HttpResponder::HttpResponder(std::shared_ptr<HttpSession> session, uint64_t exchange_id)
    : session_(std::move(session)), exchange_id_(exchange_id) {}
HttpResponder::~HttpResponder() = default;

void HttpResponder::Send(int status, std::string content_type, std::string body,
                         HttpHeaders headers) {
  session_->Post([s = session_, id = exchange_id_, status, ct = std::move(content_type),
                  b = std::move(body),
                  h = std::move(headers)]() mutable { s->Send(id, status, ct, std::move(b), h); });
}

void HttpResponder::StartStream(int status, std::string content_type, HttpHeaders headers) {
  session_->Post([s = session_, id = exchange_id_, status, ct = std::move(content_type),
                  h = std::move(headers)] { s->StartStream(id, status, ct, h); });
}

void HttpResponder::Write(std::string data) {
  session_->Post([s = session_, id = exchange_id_, d = std::move(data)]() mutable {
    s->WriteChunk(id, std::move(d));
  });
}

void HttpResponder::End() {
  session_->Post([s = session_, id = exchange_id_] { s->End(id); });
}

void HttpResponder::Post(std::function<void()> fn) { session_->Post(std::move(fn)); }

void HttpResponder::OnDisconnect(std::function<void()> fn) {
  session_->Post([s = session_, id = exchange_id_, f = std::move(fn)]() mutable {
    s->SetOnDisconnect(id, std::move(f));
  });
}

// ---- HttpServer ------------------------------------------------------------------------------

Status HttpServerOptions::Validate() const {
  if (port < 0 || port > 65535) return Status::InvalidArgument("port must be in [0, 65535]");
  if (num_threads < 1) return Status::InvalidArgument("num_threads must be at least 1");
  if (max_body_bytes < 1) return Status::InvalidArgument("max_body_bytes must be positive");
  if (max_header_bytes < 1024) return Status::InvalidArgument("max_header_bytes must be >= 1024");
  if (max_pending_write_bytes < 1) {
    return Status::InvalidArgument("max_pending_write_bytes must be positive");
  }
  if (!(read_timeout_s > 0) || !(idle_timeout_s > 0) || !(write_timeout_s > 0)) {
    return Status::InvalidArgument("timeouts must be positive");
  }
  return Status::Ok();
}

class HttpServer::Impl {
 public:
  Impl(const HttpServerOptions& options, HttpHandler handler, HttpStatusObserver observer)
      : acceptor_(net::make_strand(ioc_)),
        guard_(net::make_work_guard(ioc_)),
        shared_(std::make_shared<ServerShared>()) {
    shared_->options = options;
    shared_->handler = std::move(handler);
    shared_->observe_status = std::move(observer);
  }

  Status Bind() {
    beast::error_code ec;
    const auto address = net::ip::make_address(shared_->options.host, ec);
    if (ec) return Status::InvalidArgument("invalid host address '" + shared_->options.host + "'");
    const tcp::endpoint endpoint(address, static_cast<unsigned short>(shared_->options.port));
    const std::string where = shared_->options.host + ":" + std::to_string(shared_->options.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return Status::IOError("cannot listen on " + where + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    return Status::Ok();
  }

  void Start() {
    Accept();
    for (int i = 0; i < shared_->options.num_threads; ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
  }

  void Accept() {
    acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket s) {
      if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) {
        beast::error_code oec;
        s.set_option(tcp::no_delay(true), oec);
        std::make_shared<HttpSession>(std::move(s), shared_)->Run();
      } else {
        KILN_LOG(WARNING) << "accept failed: " << ec.message();
      }
      Accept();
    });
  }

  void StopAccepting() {
    shared_->draining = true;
    net::post(acceptor_.get_executor(), [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
  }

  void Stop() {
    if (stopped_.exchange(true)) return;
    StopAccepting();
    guard_.reset();
    ioc_.stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  net::io_context ioc_;
  tcp::acceptor acceptor_;
  net::executor_work_guard<net::io_context::executor_type> guard_;
  std::shared_ptr<ServerShared> shared_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};
  int port_ = 0;
};

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(const HttpServerOptions& options,
                                                         HttpHandler handler,
                                                         HttpStatusObserver observer) {
  KILN_RETURN_IF_ERROR(options.Validate());
  auto impl = std::make_unique<Impl>(options, std::move(handler), std::move(observer));
  KILN_RETURN_IF_ERROR(impl->Bind());
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { Stop(); }
int HttpServer::port() const { return impl_->port_; }
void HttpServer::Start() { impl_->Start(); }
void HttpServer::StopAccepting() { impl_->StopAccepting(); }
int64_t HttpServer::num_pending_exchanges() const { return impl_->shared_->pending_exchanges; }
int64_t HttpServer::num_open_connections() const { return impl_->shared_->open_connections; }
void HttpServer::Stop() { impl_->Stop(); }

}  // namespace kiln::server
