// HttpClient: the load generator's asynchronous HTTP/1.1 client (Boost.Beast over one
// asio::io_context; no thread per request). Each request in flight holds its own connection; a
// finished keep-alive connection goes back to an idle pool for the next request, so hundreds of
// concurrent streams are hundreds of sockets driven by the one io thread. A request whose reused
// connection turns out closed by the server (before any response byte) is retried once on a new
// connection. Every request has a deadline (request_timeout_s from the call): a server that stops
// answering fails the request with kind "timeout", never hangs the caller.
//
// PostStream reads an SSE (or plain JSON) response incrementally and reports content chunks with
// their arrival times; Get reads a whole small response (for /metrics).
//
// Error kinds (ResponseResult::error_kind): "connect" (refused / unreachable), "timeout",
// "disconnect" (the connection closed or reset before the response completed), "http_<status>"
// (a non-200 status; error_message from the OpenAI error JSON when present), "stream_error" (an
// error object inside the stream), "protocol" (malformed HTTP or a chunk that is not JSON),
// "incomplete" (the body ended without [DONE] or a finish_reason). Error messages quote at most a
// few hundred bytes of the server's text (Utf8Prefix).
//
// Thread-safety: not thread-safe; all calls and callbacks happen on the io_context's thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln::bench {

struct Endpoint {
  std::string host;
  std::string port;
  std::string path_prefix;  // e.g. "" or "/proxy" (no trailing '/')
};

// "http://host[:port][/prefix]", host a name, an IPv4 address or a bracketed IPv6 literal
// ("http://[::1]:8000"; Endpoint::host holds it without brackets). https is refused with a clear
// message.
StatusOr<Endpoint> ParseBaseUrl(const std::string& base_url);
// The Host header's value: "host:port", an IPv6 literal in brackets ("[::1]:8000").
std::string HostHeader(const Endpoint& e);

struct HttpClientOptions {
  std::string api_key;  // sent as "Authorization: Bearer KEY" when set
  double request_timeout_s = 600.0;
  int64_t max_error_body_bytes = 1 << 20;
};

struct ResponseResult {
  bool ok = false;
  std::string error_kind;
  std::string error_message;
  int http_status = 0;
  double start_s = 0.0;               // steady clock seconds when the call was made
  double end_s = 0.0;                 // when the response completed or failed
  std::vector<double> chunk_times_s;  // arrival time of each chunk that carried content
  std::string text;                   // all content, concatenated
  std::string finish_reason;
  int64_t prompt_tokens = -1;  // from usage, when the server reported it
  int64_t completion_tokens = -1;
  int64_t cached_tokens = -1;
  bool done_marker = false;  // "[DONE]" seen
};

// Seconds on the steady clock (the time base of ResponseResult).
double NowSeconds();

// At most max_bytes of `text` for an error message, cut on a UTF-8 character boundary (a server's
// error body may be any bytes: invalid UTF-8 is kept as it is; JSON output replaces it).
std::string Utf8Prefix(std::string_view text, size_t max_bytes);

class HttpClient final {
 public:
  HttpClient(boost::asio::io_context* io, Endpoint endpoint, HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // POST `path` (after the prefix) with a JSON body; `done` runs once, on the io thread.
  void PostStream(const std::string& path, std::string body,
                  std::function<void(ResponseResult)> done);
  // GET `path`; done(status, body, error) — error empty on success (any status).
  void Get(const std::string& path,
           std::function<void(int status, std::string body, std::string error)> done);
  // Closes idle keep-alive connections.
  void CloseIdle();
  int64_t num_connections_opened() const { return num_connections_opened_; }

  class Exchange;
  struct Connection;

 private:
  friend class Exchange;
  boost::asio::io_context* io_;
  Endpoint endpoint_;
  HttpClientOptions options_;
  std::vector<std::unique_ptr<Connection>> idle_;
  int64_t num_connections_opened_ = 0;
};

}  // namespace kiln::bench
