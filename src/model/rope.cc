#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "common/check.h"

namespace kiln {

namespace {
// Rounds a float to the precision of bfloat16 / float16 (round to nearest even); other dtypes
// leave it unchanged.
float RoundToCheckpointDType(float f, const std::string& dtype) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if (dtype == "bfloat16") {
    bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  } else if (dtype == "float16") {
    if (std::fabs(f) < 6.103515625e-05f) return std::nearbyint(f * 16777216.0f) / 16777216.0f;
    bits = (bits + 0xFFFu + ((bits >> 13) & 1u)) & ~0x1FFFu;
  } else {
    return f;
  }
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
}  // namespace

RopeTable ComputeRopeTable(const ModelConfig& config) {
  const int dim = config.head_dim;
  const int half = dim / 2;
  const RopeScaling& s = config.rope_scaling;
  double base = config.rope_theta;
  if (s.type == RopeScaling::Type::kDynamic && s.factor > 1.0)
    base *= std::pow(s.factor * s.factor - s.factor + 1.0, static_cast<double>(dim) / (dim - 2));
  std::vector<double> inv(half);
  for (int i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(base, (2.0 * i) / dim);
  RopeTable table;
  switch (s.type) {
    case RopeScaling::Type::kNone:
    case RopeScaling::Type::kDynamic:
      break;
    case RopeScaling::Type::kLinear:
      for (double& f : inv) f /= s.factor;
      break;
    case RopeScaling::Type::kLlama3: {
      const double old_len = s.original_max_position_embeddings;
      const double low_wavelen = old_len / s.low_freq_factor;
      const double high_wavelen = old_len / s.high_freq_factor;
      for (double& f : inv) {
        const double wavelen = 2.0 * M_PI / f;
        if (wavelen < high_wavelen) continue;  // high frequency: unchanged
        if (wavelen > low_wavelen) {           // low frequency: interpolated
          f /= s.factor;
          continue;
        }
        const double smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - smooth) * f / s.factor + smooth * f;
      }
      break;
    }
    case RopeScaling::Type::kYarn: {
      const double orig = s.original_max_position_embeddings > 0
                              ? s.original_max_position_embeddings
                              : config.max_position_embeddings;
      auto correction_dim = [&](double rotations) {
        return dim * std::log(orig / (rotations * 2.0 * M_PI)) / (2.0 * std::log(base));
      };
      double low = correction_dim(s.beta_fast), high = correction_dim(s.beta_slow);
      if (s.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;
      for (int i = 0; i < half; ++i) {
        const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
        const double extrapolation_factor = 1.0 - ramp;
        const double interp = inv[i] / s.factor;
        inv[i] = interp * (1.0 - extrapolation_factor) + inv[i] * extrapolation_factor;
      }
      auto get_mscale = [](double scale, double m) {
        return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
      };
      double attention = s.attention_factor;
      if (attention <= 0.0) {
        attention = (s.mscale > 0.0 && s.mscale_all_dim > 0.0)
                        ? get_mscale(s.factor, s.mscale) / get_mscale(s.factor, s.mscale_all_dim)
                        : get_mscale(s.factor, 1.0);
      }
      table.attention_scaling = static_cast<float>(attention);
      break;
    }
  }
  if (!config.rope_freq_factors.empty()) {
    KILN_CHECK_EQ(static_cast<int>(config.rope_freq_factors.size()), half);
    for (int i = 0; i < half; ++i) inv[i] /= config.rope_freq_factors[i];
  }
  table.inv_freq.assign(inv.begin(), inv.end());
  for (float& f : table.inv_freq) f = RoundToCheckpointDType(f, config.torch_dtype);
  return table;
}


}  // namespace kiln
