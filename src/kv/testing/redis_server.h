// Test-only: a private redis-server process on a free loopback port (no persistence), started and
// killed by the test itself, so Redis-tier tests never depend on the machine's state.
// redis-server comes from scripts/setup.sh. Not thread-safe.
#pragma once

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

namespace kiln::testing {

class RedisServer final {
 public:
  RedisServer() = default;
  ~RedisServer() { Kill(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts redis-server on `port` (0: a free one), requiring `password` (AUTH) when not empty;
  // false with *error when it does not answer.
  bool Start(std::string* error, int port = 0, const std::string& password = "") {
    port_ = port != 0 ? port : FreePort();
    password_ = password;
    pid_ = fork();
    if (pid_ == 0) {
      const std::string p = std::to_string(port_);
      freopen("/dev/null", "w", stdout);
      // A password is passed as "--requirepass <password>"; an empty one as a harmless repeat.
      const char* pass_flag = password.empty() ? "--appendonly" : "--requirepass";
      const char* pass_value = password.empty() ? "no" : password.c_str();
      execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save",
             "", "--appendonly", "no", "--loglevel", "warning", "--enable-debug-command", "local",
             pass_flag, pass_value, static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      if (Ping()) return true;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        *error = "redis-server exited (is it installed? scripts/setup.sh installs it)";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    *error = "redis-server did not answer on port " + std::to_string(port_);
    Kill();
    return false;
  }

  // SIGKILL, as a crashed server.
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  // Blocks the server for `seconds` (DEBUG SLEEP from another connection, on a thread), as a
  // stalled server; returns the thread to join.
  std::thread Stall(double seconds) const {
    const int port = port_;
    return std::thread([port, seconds] {
      redisContext* c = redisConnect("127.0.0.1", port);
      if (c == nullptr) return;
      if (c->err == 0) {
        auto* r = static_cast<redisReply*>(redisCommand(c, "DEBUG SLEEP %f", seconds));
        if (r != nullptr) freeReplyObject(r);
      }
      redisFree(c);
    });
  }

  // Number of keys (DBSIZE), -1 on error.
  long long DbSize() const {
    redisContext* c = redisConnect("127.0.0.1", port_);
    if (c == nullptr || c->err != 0 || !Auth(c)) {
      if (c != nullptr) redisFree(c);
      return -1;
    }
    auto* r = static_cast<redisReply*>(redisCommand(c, "DBSIZE"));
    const long long n = r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return n;
  }

 private:
  static int FreePort() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    const int port = ntohs(addr.sin_port);
    close(fd);
    return port;
  }

  bool Auth(redisContext* c) const {
    if (password_.empty()) return true;
    auto* r = static_cast<redisReply*>(redisCommand(c, "AUTH %s", password_.c_str()));
    const bool ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
    if (r != nullptr) freeReplyObject(r);
    return ok;
  }

  bool Ping() const {
    const timeval tv{0, 200000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    if (c == nullptr || c->err != 0 || !Auth(c)) {
      if (c != nullptr) redisFree(c);
      return false;
    }
    auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    const bool ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return ok;
  }

  int port_ = 0;
  std::string password_;
  pid_t pid_ = -1;
};

}  // namespace kiln::testing
