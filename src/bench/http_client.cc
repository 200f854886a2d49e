#include "bench/http_client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <optional>
#include <utility>

#include "bench/sse.h"

namespace kiln::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string Utf8Prefix(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t n = max_bytes;
  // Back up over the continuation bytes (10xxxxxx) of a character the cut would split; a
  // character is at most 4 bytes, so at most 3 (more is not UTF-8: cut where asked).
  for (int i = 0; i < 3 && n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80; ++i) --n;
  if ((static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) n = max_bytes;
  return std::string(text.substr(0, n));
}

StatusOr<Endpoint> ParseBaseUrl(const std::string& base_url) {
  const std::string scheme = "http://";
  if (base_url.rfind("https://", 0) == 0) {
    return Status::InvalidArgument(
        "--base-url: https is not supported (use http://, e.g. via a "
        "local TLS-terminating proxy): '" +
        base_url + "'");
  }
  if (base_url.rfind(scheme, 0) != 0) {
    return Status::InvalidArgument("--base-url must start with http://, got '" + base_url + "'");
  }
  std::string rest = base_url.substr(scheme.size());
  Endpoint e;
  const size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) e.path_prefix = rest.substr(slash);
  while (!e.path_prefix.empty() && e.path_prefix.back() == '/') e.path_prefix.pop_back();
  // A trailing "/v1" is the OpenAI convention for base URLs; paths below add it themselves.
  if (e.path_prefix.size() >= 3 && e.path_prefix.compare(e.path_prefix.size() - 3, 3, "/v1") == 0) {
    e.path_prefix.resize(e.path_prefix.size() - 3);
  }
  const Status unreadable =
      Status::InvalidArgument("--base-url: cannot read host and port from '" + base_url + "'");
  std::string port_part;  // after the host: "" or ":PORT"
  if (!hostport.empty() && hostport.front() == '[') {
    // An IPv6 literal, "[::1]" or "[::1]:8000" (RFC 3986): the brackets are not part of the host.
    const size_t close = hostport.find(']');
    if (close == std::string::npos) return unreadable;
    e.host = hostport.substr(1, close - 1);
    port_part = hostport.substr(close + 1);
    if (e.host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos) {
      return unreadable;
    }
  } else {
    const size_t colon = hostport.find(':');
    if (colon != std::string::npos && hostport.find(':', colon + 1) != std::string::npos) {
      return Status::InvalidArgument(
          "--base-url: an IPv6 address needs brackets (http://[::1]:8000), got '" + base_url + "'");
    }
    e.host = hostport.substr(0, colon);
    if (colon != std::string::npos) port_part = hostport.substr(colon);
    if (e.host.find_first_of("[]@") != std::string::npos) return unreadable;
  }
  e.port = port_part.empty() ? "80" : port_part.substr(1);
  if (!port_part.empty() && port_part.front() != ':') return unreadable;
  if (e.host.empty() || e.port.empty() || e.port.size() > 5 ||
      e.port.find_first_not_of("0123456789") != std::string::npos || std::stoi(e.port) > 65535) {
    return unreadable;
  }
  return e;
}

std::string HostHeader(const Endpoint& e) {
  const bool ipv6 = e.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + e.host + "]" : e.host) + ":" + e.port;
}

struct HttpClient::Connection {
  explicit Connection(asio::io_context& io) : stream(io) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
};

// One request: acquire a connection, write, read the response incrementally, finish once.
class HttpClient::Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  using StreamDone = std::function<void(ResponseResult)>;
  using GetDone = std::function<void(int, std::string, std::string)>;

  Exchange(HttpClient* client, http::request<http::string_body> request, StreamDone stream_done,
           GetDone get_done)
      : client_(client),
        request_(std::move(request)),
        stream_done_(std::move(stream_done)),
        get_done_(std::move(get_done)),
        resolver_(*client->io_),
        sse_([this](const std::string& data) { OnEvent(data); }) {}

  void Start() {
    result_.start_s = NowSeconds();
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(client_->options_.request_timeout_s));
    Acquire();
  }

 private:
  bool streaming() const { return static_cast<bool>(stream_done_); }

  void Acquire() {
    if (!retried_ && !client_->idle_.empty()) {
      conn_ = std::move(client_->idle_.back());
      client_->idle_.pop_back();
      reused_ = true;
      Write();
      return;
    }
    reused_ = false;
    conn_ = std::make_unique<Connection>(*client_->io_);
    ++client_->num_connections_opened_;
    resolver_.async_resolve(
        client_->endpoint_.host, client_->endpoint_.port,
        [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
          if (ec) return self->Fail("connect", "resolve: " + ec.message());
          self->conn_->stream.expires_at(self->deadline_);
          self->conn_->stream.async_connect(results,
                                            [self](beast::error_code ec, const tcp::endpoint&) {
                                              if (ec == beast::error::timeout)
                                                return self->Fail("timeout", "connect timed out");
                                              if (ec) return self->Fail("connect", ec.message());
                                              self->Write();
                                            });
        });
  }

  // A reused keep-alive connection the server already closed: retry once on a new one.
  bool MaybeRetry(const beast::error_code& ec) {
    if (!reused_ || retried_ || response_bytes_ > 0 || ec == beast::error::timeout) return false;
    retried_ = true;
    beast::error_code ignored;
    conn_->stream.socket().close(ignored);
    conn_.reset();
    Acquire();
    return true;
  }

  void Write() {
    conn_->stream.expires_at(deadline_);
    http::async_write(conn_->stream, request_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) {
                          if (self->MaybeRetry(ec)) return;
                          return self->Fail(KindOf(ec), "write: " + ec.message());
                        }
                        self->ReadHeader();
                      });
  }

  void ReadHeader() {
    parser_.emplace();
    // Not boost::none: Boost 1.74 compares a Content-Length against an empty limit as exceeded.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    conn_->stream.expires_at(deadline_);
    http::async_read_header(conn_->stream, conn_->buffer, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->response_bytes_ += n;
                              if (ec) {
                                if (self->MaybeRetry(ec)) return;
                                return self->Fail(KindOf(ec),
                                                  "reading the response: " + ec.message());
                              }
                              self->OnHeader();
                            });
  }

  void OnHeader() {
    const auto& msg = parser_->get();
    result_.http_status = static_cast<int>(msg.result_int());
    const std::string content_type(msg[http::field::content_type]);
    sse_mode_ = streaming() && result_.http_status == 200 &&
                content_type.find("text/event-stream") != std::string::npos;
    ReadBody();
  }

  void ReadBody() {
    if (parser_->is_done()) return Finish();
    parser_->get().body().data = chunk_;
    parser_->get().body().size = sizeof(chunk_);
    conn_->stream.expires_at(deadline_);
    http::async_read_some(conn_->stream, conn_->buffer, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->response_bytes_ += n;
                            const size_t got =
                                sizeof(self->chunk_) - self->parser_->get().body().size;
                            if (ec == http::error::need_buffer) ec = {};
                            if (got > 0) self->OnBytes(std::string_view(self->chunk_, got));
                            if (ec)
                              return self->Fail(KindOf(ec), "reading the body: " + ec.message());
                            self->ReadBody();
                          });
  }

  void OnBytes(std::string_view bytes) {
    if (sse_mode_) {
      sse_.Feed(bytes);
      return;
    }
    const bool cap = !(streaming() && result_.http_status == 200);
    if (cap && static_cast<int64_t>(body_.size() + bytes.size()) >
                   client_->options_.max_error_body_bytes) {
      return;
    }
    body_.append(bytes.data(), bytes.size());
  }

  void OnEvent(const std::string& data) {
    const StreamChunk c = ParseStreamChunk(data);
    if (c.done) {
      result_.done_marker = true;
      return;
    }
    if (c.parse_error) {
      if (protocol_error_.empty())
        protocol_error_ = "stream chunk is not a JSON object: " + Utf8Prefix(data, 200);
      return;
    }
    if (!c.error.empty()) {
      if (stream_error_.empty()) stream_error_ = c.error;
      return;
    }
    Apply(c);
  }

  void Apply(const StreamChunk& c) {
    if (!c.content.empty()) {
      result_.chunk_times_s.push_back(NowSeconds());
      result_.text += c.content;
    }
    if (!c.finish_reason.empty()) result_.finish_reason = c.finish_reason;
    if (c.prompt_tokens >= 0) result_.prompt_tokens = c.prompt_tokens;
    if (c.completion_tokens >= 0) result_.completion_tokens = c.completion_tokens;
    if (c.cached_tokens >= 0) result_.cached_tokens = c.cached_tokens;
  }

  void Finish() {
    if (finished_) return;
    if (parser_->keep_alive()) {
      client_->idle_.push_back(std::move(conn_));
    } else {
      Close();
    }
    if (!streaming()) {
      finished_ = true;
      get_done_(result_.http_status, std::move(body_), "");
      return;
    }
    result_.end_s = NowSeconds();
    const int status = result_.http_status;
    if (status != 200) return Complete("http_" + std::to_string(status), ErrorMessage(body_));
    if (sse_mode_) {
      sse_.Finish();
      if (!stream_error_.empty()) return Complete("stream_error", stream_error_);
      if (!protocol_error_.empty()) return Complete("protocol", protocol_error_);
      if (!result_.done_marker && result_.finish_reason.empty()) {
        return Complete("incomplete", "the stream ended without [DONE] or a finish_reason");
      }
      return Complete("", "");
    }
    // A plain JSON response (a server that does not stream).
    const StreamChunk c = ParseStreamChunk(body_);
    if (c.parse_error)
      return Complete("protocol", "response is not JSON: " + Utf8Prefix(body_, 200));
    if (!c.error.empty()) return Complete("stream_error", c.error);
    Apply(c);
    return Complete("", "");
  }

  static std::string ErrorMessage(const std::string& body) {
    const StreamChunk c = ParseStreamChunk(body);
    if (!c.error.empty()) return c.error;
    return Utf8Prefix(body, 300);
  }

  static std::string KindOf(const beast::error_code& ec) {
    if (ec == beast::error::timeout) return "timeout";
    if (ec.category() == beast::http::make_error_code(http::error::bad_version).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return "protocol";
    }
    return "disconnect";
  }

  void Close() {
    if (!conn_) return;
    beast::error_code ignored;
    conn_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    conn_->stream.socket().close(ignored);
    conn_.reset();
  }

  void Fail(const std::string& kind, const std::string& message) {
    if (finished_) return;
    Close();
    if (!streaming()) {
      finished_ = true;
      get_done_(0, "", kind + ": " + message);
      return;
    }
    result_.end_s = NowSeconds();
    Complete(kind, message);
  }

  void Complete(const std::string& kind, const std::string& message) {
    finished_ = true;
    result_.ok = kind.empty();
    result_.error_kind = kind;
    result_.error_message = message;
    stream_done_(std::move(result_));
  }

  HttpClient* client_;
  http::request<http::string_body> request_;
  StreamDone stream_done_;
  GetDone get_done_;
  tcp::resolver resolver_;
  std::unique_ptr<Connection> conn_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  std::chrono::steady_clock::time_point deadline_;
  char chunk_[16384];
  SseParser sse_;
  bool sse_mode_ = false;
  std::string body_;
  std::string protocol_error_;
  std::string stream_error_;
  ResponseResult result_;
  int64_t response_bytes_ = 0;
  bool reused_ = false;
  bool retried_ = false;
  bool finished_ = false;
};

HttpClient::HttpClient(asio::io_context* io, Endpoint endpoint, HttpClientOptions options)
    : io_(io), endpoint_(std::move(endpoint)), options_(std::move(options)) {}

HttpClient::~HttpClient() { CloseIdle(); }

void HttpClient::CloseIdle() {
  for (auto& c : idle_) {
    beast::error_code ignored;
    c->stream.socket().close(ignored);
  }
  idle_.clear();
}

namespace {

http::request<http::string_body> MakeRequest(const Endpoint& e, const HttpClientOptions& o,
                                             http::verb verb, const std::string& path) {
  http::request<http::string_body> req{verb, e.path_prefix + path, 11};
  req.set(http::field::host, HostHeader(e));
  req.set(http::field::user_agent, "kiln-bench");
  if (!o.api_key.empty()) req.set(http::field::authorization, "Bearer " + o.api_key);
  req.keep_alive(true);
  return req;
}

}  // namespace

void HttpClient::PostStream(const std::string& path, std::string body,
                            std::function<void(ResponseResult)> done) {
  auto req = MakeRequest(endpoint_, options_, http::verb::post, path);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "text/event-stream");
  req.body() = std::move(body);
  req.prepare_payload();
  std::make_shared<Exchange>(this, std::move(req), std::move(done), nullptr)->Start();
}

void HttpClient::Get(const std::string& path,
                     std::function<void(int, std::string, std::string)> done) {
  auto req = MakeRequest(endpoint_, options_, http::verb::get, path);
  std::make_shared<Exchange>(this, std::move(req), nullptr, std::move(done))->Start();
}

}  // namespace kiln::bench
