// WAV (RIFF PCM) in and out, and base64: the container of TTS output. WriteWav makes a 16-bit PCM
// mono file; ReadWavInfo parses any PCM WAV header (chunks in any order, unknown chunks skipped)
// and derives the duration from the data chunk's size.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::workflow {

struct WavInfo {
  int sample_rate = 0;
  int num_channels = 0;
  int bits_per_sample = 0;
  int64_t num_frames = 0;
  double duration_s = 0;
};

std::string WriteWav(const std::vector<int16_t>& samples, int sample_rate);
StatusOr<WavInfo> ReadWavInfo(const std::string& bytes);

std::string Base64Encode(const std::string& bytes);
StatusOr<std::string> Base64Decode(const std::string& text);

}  // namespace kiln::workflow
