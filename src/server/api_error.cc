#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace kiln::server {

ApiError ApiError::BadRequest(std::string message, std::string param) {
  ApiError e;
  e.message = std::move(message);
  e.param = std::move(param);
  return e;
}

ApiError ApiError::NotFound(std::string message, std::string code) {
  ApiError e;
  e.http_status = 404;
  e.message = std::move(message);
  e.type = "not_found_error";
  e.code = std::move(code);
  return e;
}

ApiError ApiError::FromStatus(const Status& status, std::string param) {
  ApiError e;
  e.message = status.message();
  e.param = std::move(param);
  switch (status.code()) {
    case StatusCode::kOk:
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kUnimplemented:
      e.http_status = 400;
      e.type = "invalid_request_error";
      break;
    case StatusCode::kNotFound:
      e.http_status = 404;
      e.type = "not_found_error";
      break;
    case StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "authentication_error";
      break;
    case StatusCode::kResourceExhausted:
    case StatusCode::kUnavailable:
    case StatusCode::kFailedPrecondition:
      e.http_status = 503;
      e.type = "service_unavailable";
      e.retry_after_s = 1;
      break;
    case StatusCode::kAborted:
    case StatusCode::kDataLoss:
    case StatusCode::kIOError:
    case StatusCode::kInternal:
      e.http_status = 500;
      e.type = "internal_error";
      break;
  }
  if (status.code() == StatusCode::kOutOfRange) e.code = "context_length_exceeded";
  return e;
}

nlohmann::json ApiError::Body() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
            {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code)}}}};
}

std::string ApiError::ToJson() const {
  return Body().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace kiln::server
