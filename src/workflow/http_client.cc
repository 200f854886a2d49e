#include "workflow/http_client.h"

#include <strings.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>

namespace kiln::workflow {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Drives one asynchronous operation to completion on `ioc`, closing the stream when the deadline
// passes or the request is cancelled (the operation then completes with operation_aborted).
class Driver {
 public:
  Driver(asio::io_context& ioc, beast::tcp_stream& stream, const HttpFetchRequest& r)
      : ioc_(ioc), stream_(stream), r_(r), start_(Clock::now()) {}

  template <typename Start>
  Status Run(Start&& start, const char* what) {
    bool done = false;
    beast::error_code ec;
    start([&](beast::error_code e) {
      ec = e;
      done = true;
    });
    ioc_.restart();
    while (!done) {
      if (!closed_) {
        if (r_.cancelled != nullptr && r_.cancelled->load()) {
          cancelled_ = true;
          Close();
        } else if (Clock::now() >= r_.deadline) {
          timed_out_ = true;
          Close();
        }
      }
      ioc_.run_one_for(std::chrono::milliseconds(5));
    }
    if (cancelled_) return Status::Aborted("request cancelled");
    if (timed_out_) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "timed out after %.1f s (%s)",
                    std::chrono::duration<double>(Clock::now() - start_).count(), what);
      return Status::Unavailable(buf);
    }
    if (ec == http::error::end_of_stream) eof_ = true;
    if (ec && ec != http::error::end_of_stream) {
      return Status::Unavailable(std::string(what) + ": " + ec.message());
    }
    return Status::Ok();
  }

  bool eof() const { return eof_; }

 private:
  void Close() {
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }
  asio::io_context& ioc_;
  beast::tcp_stream& stream_;
  const HttpFetchRequest& r_;
  Clock::time_point start_;
  bool closed_ = false, cancelled_ = false, timed_out_ = false, eof_ = false;
};

}  // namespace

std::string HttpFetchResponse::Header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  }
  return "";
}

StatusOr<ParsedUrl> ParseHttpUrl(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    return Status::InvalidArgument("URL '" + url +
                                   "': only http:// URLs are supported (put TLS in a proxy)");
  }
  ParsedUrl p;
  const size_t host_start = scheme.size();
  const size_t slash = url.find('/', host_start);
  std::string authority =
      url.substr(host_start, slash == std::string::npos ? std::string::npos : slash - host_start);
  p.target = slash == std::string::npos ? "/" : url.substr(slash);
  if (authority.empty()) return Status::InvalidArgument("URL '" + url + "' has no host");
  const size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    p.host = authority.substr(0, colon);
    p.port = authority.substr(colon + 1);
    if (p.port.empty() || p.port.find_first_not_of("0123456789") != std::string::npos) {
      return Status::InvalidArgument("URL '" + url + "' has a malformed port");
    }
  } else {
    p.host = authority;
    p.port = "80";
  }
  if (p.host.empty()) return Status::InvalidArgument("URL '" + url + "' has no host");
  return p;
}

StatusOr<HttpFetchResponse> HttpFetch(const HttpFetchRequest& r) {
  KILN_ASSIGN_OR_RETURN(ParsedUrl url, ParseHttpUrl(r.url));
  if (Clock::now() >= r.deadline) return Status::Unavailable("timed out before the request");
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  const auto endpoints = resolver.resolve(url.host, url.port, ec);
  if (ec) return Status::Unavailable("cannot resolve " + url.host + ": " + ec.message());
  beast::tcp_stream stream(ioc);
  Driver driver(ioc, stream, r);
  KILN_RETURN_IF_ERROR(driver.Run(
      [&](auto done) {
        stream.async_connect(endpoints,
                             [done](beast::error_code e, const tcp::endpoint&) { done(e); });
      },
      ("connect to " + url.host + ":" + url.port).c_str()));

  http::request<http::string_body> req;
  req.method_string(r.method);
  req.target(url.target);
  req.version(11);
  req.set(http::field::host, url.host + ":" + url.port);
  req.set(http::field::user_agent, "kiln-workflow");
  for (const auto& [k, v] : r.headers) req.set(k, v);
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH") {
    req.body() = r.body;
    req.prepare_payload();
  }
  req.keep_alive(false);
  KILN_RETURN_IF_ERROR(driver.Run(
      [&](auto done) {
        http::async_write(stream, req, [done](beast::error_code e, size_t) { done(e); });
      },
      "write request"));

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(static_cast<uint64_t>(r.max_body_bytes));
  KILN_RETURN_IF_ERROR(driver.Run(
      [&](auto done) {
        http::async_read_header(stream, buffer, parser,
                                [done](beast::error_code e, size_t) { done(e); });
      },
      "read response header"));
  size_t delivered = 0;
  while (!parser.is_done()) {
    KILN_RETURN_IF_ERROR(driver.Run(
        [&](auto done) {
          http::async_read_some(stream, buffer, parser,
                                [done](beast::error_code e, size_t) { done(e); });
        },
        "read response body"));
    const std::string& body = parser.get().body();
    if (r.on_body && body.size() > delivered) {
      r.on_body(std::string_view(body).substr(delivered));
      delivered = body.size();
    }
    if (driver.eof()) break;
  }
  HttpFetchResponse out;
  out.status = static_cast<int>(parser.get().result_int());
  for (const auto& f : parser.get()) {
    out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  }
  out.body = std::move(parser.get().body());
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return out;
}

}  // namespace kiln::workflow
