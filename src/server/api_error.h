// ApiError: a request the server refuses, as an HTTP status plus the OpenAI error fields
// ({"error": {"message", "type", "param", "code"}}). Maps kiln::Status codes to HTTP statuses.
// Messages never contain stack traces or file paths: they are written for the API caller.
//
// Value type; thread-safe to copy.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "kiln/status.h"

namespace kiln::server {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;      // the offending request field, or empty
  std::string code;       // machine-readable code, or empty
  int retry_after_s = 0;  // > 0 → a Retry-After header is sent (503)

  static ApiError BadRequest(std::string message, std::string param = "");
  static ApiError NotFound(std::string message, std::string code);
  // `status` must not be OK.
  static ApiError FromStatus(const Status& status, std::string param = "");

  // {"error": {...}} as a JSON value and as JSON text.
  nlohmann::json Body() const;
  std::string ToJson() const;
};

}  // namespace kiln::server
