// A blocking HTTP/1.1 test client over POSIX loopback sockets, for the server's tests only:
// raw sends (so tests can write malformed or partial requests), reads of Content-Length and
// chunked responses, and detection of the peer closing. Not thread-safe; one per connection.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>

namespace kiln::server::test_client {

// Blocking loopback client over POSIX sockets.
class Client final {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{20, 0};  // generous: CI machines are shared
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Client() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool connected() const { return connected_; }
  void Send(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  // Reads until `needle` was seen or the peer closed / timed out.
  std::string ReadUntil(const std::string& needle) {
    while (buf_.find(needle) == std::string::npos) {
      char tmp[4096];
      const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) break;
      buf_.append(tmp, static_cast<size_t>(n));
    }
    const size_t pos = buf_.find(needle);
    std::string out;
    if (pos == std::string::npos) {
      out = std::move(buf_);
      buf_.clear();
    } else {
      out = buf_.substr(0, pos + needle.size());
      buf_.erase(0, pos + needle.size());
    }
    return out;
  }
  // Reads one Content-Length response (head + body).
  std::string ReadResponse() {
    std::string head = ReadUntil("\r\n\r\n");
    return head + ReadResponseBody(head);
  }
  // Reads the Content-Length body that follows `head` (already read).
  std::string ReadResponseBody(const std::string& head) {
    const auto cl = head.find("Content-Length: ");
    if (cl == std::string::npos) return "";
    const size_t len = std::stoul(head.substr(cl + 16));
    while (buf_.size() < len) {
      char tmp[4096];
      const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) break;
      buf_.append(tmp, static_cast<size_t>(n));
    }
    std::string body = buf_.substr(0, len);
    buf_.erase(0, std::min(len, buf_.size()));
    return body;
  }
  void NoDelay() {  // each Send() goes out as its own segment at once (no Nagle delay)
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }  // a half-close: "done sending"
  // Closes with a reset (SO_LINGER 0) instead of a FIN.
  void Reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    Close();
  }
  bool PeerClosed() {
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

struct HttpResult {
  int status = 0;
  std::string head;  // status line + headers
  std::string body;  // de-chunked
};

// Parses one response from `c`: Content-Length or chunked (de-chunked into body).
inline HttpResult ReadHttpResult(Client& c) {
  HttpResult r;
  // Interim 1xx responses come before the final one (a server probing a half-closed peer sends
  // 100 Continue); clients skip them (RFC 9110 §15.2).
  do {
    r.head = c.ReadUntil("\r\n\r\n");
    r.status = r.head.size() >= 12 ? std::atoi(r.head.c_str() + 9) : 0;
  } while (r.status >= 100 && r.status < 200);
  if (r.head.find("Transfer-Encoding: chunked") != std::string::npos) {
    const std::string raw = c.ReadUntil("\r\n0\r\n\r\n");
    size_t pos = 0;
    while (pos < raw.size()) {
      const size_t eol = raw.find("\r\n", pos);
      if (eol == std::string::npos) break;
      const size_t len = std::stoul(raw.substr(pos, eol - pos), nullptr, 16);
      if (len == 0) break;
      r.body += raw.substr(eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    return r;
  }
  const std::string full = c.ReadResponseBody(r.head);
  r.body = full;
  return r;
}

// One request on a fresh connection.
inline HttpResult Fetch(int port, const std::string& method, const std::string& path,
                        const std::string& body = "", const std::string& extra_headers = "") {
  Client c(port);
  c.Send(method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  return ReadHttpResult(c);
}

}  // namespace kiln::server::test_client
