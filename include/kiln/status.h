// Status and StatusOr<T>: how every expected failure travels in kiln (bad input, I/O, out of
// blocks). Broken invariants are not Statuses: they abort through KILN_CHECK (src/common/check.h).
// No exceptions cross module boundaries; the server maps StatusCode to HTTP status + OpenAI error.
//
// Thread-safety: value types, safe to copy between threads.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace kiln {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,     // caller's input is wrong (HTTP 400)
  kNotFound,            // a named thing does not exist (HTTP 404)
  kOutOfRange,          // a value past a limit, e.g. prompt longer than max_model_len (HTTP 400)
  kResourceExhausted,   // out of KV blocks, queue full (HTTP 503 / 413)
  kUnauthenticated,     // HTTP 401
  kUnimplemented,       // a feature kiln does not support for this input (HTTP 400, named)
  kFailedPrecondition,  // state does not allow the call (e.g. engine stopped)
  kDataLoss,            // a malformed or truncated file
  kIOError,             // the OS said no
  kAborted,             // the request was aborted
  kUnavailable,         // temporarily unavailable (HTTP 503)
  kInternal,            // should not happen; a bug
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status final {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status Unauthenticated(std::string m) { return {StatusCode::kUnauthenticated, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
  static Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
  static Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message" (or "OK").
  std::string ToString() const;

  // Returns a copy with "context: " prepended to the message (same code).
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-OK Status. Accessing value() of an error aborts.
template <typename T>
class [[nodiscard]] StatusOr final {
 public:
  StatusOr(const Status& status) : status_(status) { CheckNotOk(); }  // NOLINT
  StatusOr(Status&& status) : status_(std::move(status)) { CheckNotOk(); }  // NOLINT
  StatusOr(const T& value) : value_(value) {}                         // NOLINT
  StatusOr(T&& value) : value_(std::move(value)) {}                    // NOLINT
  template <typename U, typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                                    !std::is_same_v<std::decay_t<U>, Status> &&
                                                    !std::is_same_v<std::decay_t<U>, T>>>
  StatusOr(U&& value) : value_(T(std::forward<U>(value))) {}  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { CheckOk(); return *value_; }
  const T& value() const& { CheckOk(); return *value_; }
  T&& value() && { CheckOk(); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void CheckOk() const;
  void CheckNotOk() const;
  Status status_;
  std::optional<T> value_;
};

[[noreturn]] void StatusOrAccessFailure(const Status& status);

template <typename T>
void StatusOr<T>::CheckOk() const {
  if (!status_.ok()) StatusOrAccessFailure(status_);
}
template <typename T>
void StatusOr<T>::CheckNotOk() const {
  if (status_.ok()) StatusOrAccessFailure(Status::Internal("StatusOr constructed from OK status"));
}

}  // namespace kiln

#define KILN_STATUS_CONCAT_INNER(a, b) a##b
#define KILN_STATUS_CONCAT(a, b) KILN_STATUS_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` is not OK.
#define KILN_RETURN_IF_ERROR(expr)                   \
  do {                                               \
    ::kiln::Status _kiln_status = (expr);            \
    if (!_kiln_status.ok()) return _kiln_status;     \
  } while (0)

// KILN_ASSIGN_OR_RETURN(auto x, MakeX()); — declares/assigns lhs or returns the error.
#define KILN_ASSIGN_OR_RETURN(lhs, expr) \
  KILN_ASSIGN_OR_RETURN_IMPL(KILN_STATUS_CONCAT(_kiln_statusor_, __LINE__), lhs, expr)
#define KILN_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
