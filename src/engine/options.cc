// Validate() of the public option and request structs (include/kiln/options.h, request.h) and
// FinishReasonName (output.h). Every error names the offending field and its value.
#include "kiln/options.h"

#include <cmath>
#include <string>

#include "kiln/output.h"
#include "kiln/request.h"
#include "kv/redis_tier.h"

namespace kiln {
namespace {

Status Bad(const std::string& field, const std::string& what) {
  return Status::InvalidArgument(field + " " + what);
}

std::string Num(double v) {
  std::string s = std::to_string(v);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
    case FinishReason::kNone:
      return "";
  }
  return "";
}

Status ModelOptions::Validate() const {
  if (model_path.empty()) return Bad("model_path", "is empty");
  if (load_format != "auto" && load_format != "dummy") {
    return Bad("load_format", "must be \"auto\" or \"dummy\", got \"" + load_format + "\"");
  }
  if (dtype != "auto" && dtype != "float32" && dtype != "bfloat16" && dtype != "float16") {
    return Bad("dtype", "must be auto, float32, bfloat16 or float16, got \"" + dtype + "\"");
  }
  if (quantization != "auto" && quantization != "none" && quantization != "fp8") {
    return Bad("quantization", "must be auto, none or fp8, got \"" + quantization + "\"");
  }
  if (quantization_scale != "per-channel" && quantization_scale != "per-tensor") {
    return Bad("quantization_scale",
               "must be per-channel or per-tensor, got \"" + quantization_scale + "\"");
  }
  return Status::Ok();
}

Status CacheOptions::Validate() const {
  if (block_size <= 0 || block_size > 1024 || (block_size & (block_size - 1)) != 0) {
    return Bad("block_size",
               "must be a power of two in [1, 1024], got " + std::to_string(block_size));
  }
  if (num_blocks < 0) return Bad("num_blocks", "must be >= 0, got " + std::to_string(num_blocks));
  if (num_blocks >= (int64_t{1} << 31)) return Bad("num_blocks", "is too large");
  if (kv_cache_memory_bytes <= 0) {
    return Bad("kv_cache_memory_bytes",
               "must be > 0, got " + std::to_string(kv_cache_memory_bytes));
  }
  if (!(gpu_memory_utilization > 0.0 && gpu_memory_utilization <= 1.0)) {
    return Bad("gpu_memory_utilization", "must be in (0, 1], got " + Num(gpu_memory_utilization));
  }
  if (kv_cache_dtype != "auto" && kv_cache_dtype != "bfloat16" && kv_cache_dtype != "float32" &&
      kv_cache_dtype != "fp8") {
    return Bad("kv_cache_dtype",
               "must be auto, bfloat16, float32 or fp8, got \"" + kv_cache_dtype + "\"");
  }
  if (cpu_offload_bytes < 0) {
    return Bad("cpu_offload_bytes", "must be >= 0, got " + std::to_string(cpu_offload_bytes));
  }
  if (!disk_cache_dir.empty() && disk_cache_bytes <= 0) {
    return Bad("disk_cache_bytes", "must be > 0, got " + std::to_string(disk_cache_bytes));
  }
  if (!redis_url.empty()) {
    if (redis_url.rfind("redis://", 0) != 0) {
      return Bad("redis_url",
                 "must start with redis://, got \"" + RedactRedisUrl(redis_url) + "\"");
    }
    if (redis_ttl_s <= 0) return Bad("redis_ttl_s", "must be > 0");
    if (redis_max_bytes <= 0) return Bad("redis_max_bytes", "must be > 0");
    if (redis_timeout_ms <= 0) return Bad("redis_timeout_ms", "must be > 0");
  }
  if (kv_fetch_timeout_ms < 0) {
    return Bad("kv_fetch_timeout_ms", "must be >= 0, got " + std::to_string(kv_fetch_timeout_ms));
  }
  const bool tiers = cpu_offload_bytes > 0 || !disk_cache_dir.empty() || !redis_url.empty();
  if (tiers && !enable_prefix_caching) {
    return Bad("enable_prefix_caching", "must be on for the KV tiers (cpu offload, disk, Redis)");
  }
  return Status::Ok();
}

Status SchedulerOptions::Validate() const {
  if (max_num_seqs <= 0)
    return Bad("max_num_seqs", "must be > 0, got " + std::to_string(max_num_seqs));
  if (max_num_batched_tokens <= 0) {
    return Bad("max_num_batched_tokens",
               "must be > 0, got " + std::to_string(max_num_batched_tokens));
  }
  if (max_num_batched_tokens < max_num_seqs) {
    return Bad("max_num_batched_tokens", "(" + std::to_string(max_num_batched_tokens) +
                                             ") must be >= max_num_seqs (" +
                                             std::to_string(max_num_seqs) + ")");
  }
  if (max_model_len < 0)
    return Bad("max_model_len", "must be >= 0, got " + std::to_string(max_model_len));
  if (!enable_chunked_prefill && max_model_len > max_num_batched_tokens) {
    return Bad("max_num_batched_tokens",
               "(" + std::to_string(max_num_batched_tokens) + ") must be >= max_model_len (" +
                   std::to_string(max_model_len) + ") when chunked prefill is off");
  }
  if (max_waiting_requests <= 0) {
    return Bad("max_waiting_requests", "must be > 0, got " + std::to_string(max_waiting_requests));
  }
  return Status::Ok();
}

Status DeviceOptions::Validate() const {
  if (device != "cpu" && device != "cuda") {
    return Bad("device", "must be \"cpu\" or \"cuda\", got \"" + device + "\"");
  }
  if (num_threads < 0)
    return Bad("num_threads", "must be >= 0, got " + std::to_string(num_threads));
  if (cuda_device < 0)
    return Bad("cuda_device", "must be >= 0, got " + std::to_string(cuda_device));
  return Status::Ok();
}

Status EngineOptions::Validate() const {
  KILN_RETURN_IF_ERROR(model.Validate().WithContext("model"));
  KILN_RETURN_IF_ERROR(cache.Validate().WithContext("cache"));
  KILN_RETURN_IF_ERROR(scheduler.Validate().WithContext("scheduler"));
  KILN_RETURN_IF_ERROR(device.Validate().WithContext("device"));
  return Status::Ok();
}

Status SamplingParams::Validate(int vocab_size) const {
  if (!std::isfinite(temperature) || temperature < 0.0f) {
    return Bad("temperature", "must be finite and >= 0, got " + Num(temperature));
  }
  if (top_k < -1) return Bad("top_k", "must be -1, 0 or positive, got " + std::to_string(top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f)) return Bad("top_p", "must be in (0, 1], got " + Num(top_p));
  if (!(min_p >= 0.0f && min_p <= 1.0f))
    return Bad("min_p", "must be in [0, 1], got " + Num(min_p));
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty)) {
    return Bad("repetition_penalty", "must be finite and > 0, got " + Num(repetition_penalty));
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return Bad("presence_penalty", "must be in [-2, 2], got " + Num(presence_penalty));
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return Bad("frequency_penalty", "must be in [-2, 2], got " + Num(frequency_penalty));
  }
  if (max_tokens < 0) return Bad("max_tokens", "must be >= 0, got " + std::to_string(max_tokens));
  if (min_tokens < 0) return Bad("min_tokens", "must be >= 0, got " + std::to_string(min_tokens));
  if (min_tokens > max_tokens) {
    return Bad("min_tokens", "(" + std::to_string(min_tokens) + ") must be <= max_tokens (" +
                                 std::to_string(max_tokens) + ")");
  }
  if (logprobs < -1) return Bad("logprobs", "must be >= -1, got " + std::to_string(logprobs));
  if (vocab_size > 0 && logprobs > vocab_size) {
    return Bad("logprobs", "(" + std::to_string(logprobs) + ") exceeds the vocabulary size (" +
                               std::to_string(vocab_size) + ")");
  }
  if (prompt_logprobs < -1) {
    return Bad("prompt_logprobs", "must be >= -1, got " + std::to_string(prompt_logprobs));
  }
  if (vocab_size > 0 && prompt_logprobs > vocab_size) {
    return Bad("prompt_logprobs", "(" + std::to_string(prompt_logprobs) +
                                      ") exceeds the vocabulary size (" +
                                      std::to_string(vocab_size) + ")");
  }
  auto check_ids = [&](const std::vector<int32_t>& ids, const char* field) -> Status {
    for (int32_t id : ids) {
      if (id < 0 || (vocab_size > 0 && id >= vocab_size)) {
        return Bad(field, "contains id " + std::to_string(id) + " outside the vocabulary [0, " +
                              std::to_string(vocab_size) + ")");
      }
    }
    return Status::Ok();
  };
  KILN_RETURN_IF_ERROR(check_ids(stop_token_ids, "stop_token_ids"));
  KILN_RETURN_IF_ERROR(check_ids(chosen_logprob_token_ids, "chosen_logprob_token_ids"));
  switch (response_format.type) {
    case ResponseFormat::Type::kJsonSchema:
      if (response_format.json_schema.empty())
        return Bad("response_format.json_schema", "is empty");
      break;
    case ResponseFormat::Type::kRegex:
      if (response_format.regex.empty()) return Bad("response_format.regex", "is empty");
      break;
    case ResponseFormat::Type::kChoice:
      if (response_format.choices.empty()) return Bad("response_format.choices", "is empty");
      break;
    case ResponseFormat::Type::kGrammar:
      if (response_format.grammar.empty()) return Bad("response_format.grammar", "is empty");
      break;
    default:
      break;
  }
  return Status::Ok();
}

}  // namespace kiln
