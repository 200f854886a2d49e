// HttpFetch: one HTTP/1.1 request from a workflow node to a service (a model endpoint, an RPC or
// storage service, a webhook), on Boost.Beast. Honours a deadline and a cancellation flag while
// connecting, writing and reading (the socket is closed when either fires), and can hand the body
// to a callback as it arrives (for SSE streams).
//
// Only http:// URLs (plain TCP): TLS belongs to a sidecar or proxy in front of the service.
//
// Errors: InvalidArgument for a malformed URL; Unavailable for connection failures and timeouts
// ("timed out after 2.0 s"); Aborted when cancelled. A response with any status is a success here
// (the caller decides what a 500 means).
//
// Thread-safety: a pure function; each call has its own io_context and socket.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/status.h"

namespace kiln::workflow {

struct HttpFetchRequest {
  std::string method = "GET";
  std::string url;  // http://host[:port]/path[?query]
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  const std::atomic<bool>* cancelled = nullptr;
  int64_t max_body_bytes = int64_t{64} << 20;
  // Called with each piece of the (de-chunked) body as it arrives; the body is still returned.
  std::function<void(std::string_view)> on_body;
};

struct HttpFetchResponse {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string Header(const std::string& name) const;  // case-insensitive; "" when absent
};

StatusOr<HttpFetchResponse> HttpFetch(const HttpFetchRequest& request);

struct ParsedUrl {
  std::string host;
  std::string port;
  std::string target;  // path + query, at least "/"
};
StatusOr<ParsedUrl> ParseHttpUrl(const std::string& url);

}  // namespace kiln::workflow
