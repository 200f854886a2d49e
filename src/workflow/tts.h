// Speech synthesis with espeak-ng through its C library (libespeak-ng): text or SSML → 16-bit
// mono PCM at the library's sample rate (22050 Hz), as a WAV.
//
// Style tags map to prosody: a `style` for the whole text, or inline markers "[cheerful] Hi!
// [calm] Bye." that switch style for the text after them. Known styles: neutral, cheerful,
// excited, calm, sad, serious, whisper (see StyleProsody in tts.cc). Plain text with styles is
// turned into SSML (<prosody rate pitch volume>), with the text XML-escaped.
//
// espeak-ng keeps global state: all synthesis in the process is serialised by one mutex.
// Synthesis stops early (Aborted / Unavailable) when the cancellation flag or deadline fires.
//
// Thread-safety: Synthesize may be called from any thread (it takes the global lock).
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include "kiln/status.h"

namespace kiln::workflow {

struct TtsOptions {
  std::string voice = "en";  // an espeak-ng voice name (en, en-us, de, fr, ...)
  int rate_wpm = 175;        // 80 .. 450 words per minute
  int pitch = 50;            // 0 .. 100
  int volume = 100;          // 0 .. 200
  std::string style;         // one of the known styles; "" = neutral
  bool ssml = false;         // the text is SSML already
  Status Validate() const;
};

struct TtsAudio {
  std::string wav;  // a complete WAV file
  int sample_rate = 0;
  int64_t num_samples = 0;
  double duration_s = 0;
  std::string ssml;  // what was synthesised (for the run log)
};

StatusOr<TtsAudio> Synthesize(const std::string& text, const TtsOptions& options,
                              std::chrono::steady_clock::time_point deadline,
                              const std::atomic<bool>* cancelled);

// Plain text with style markers → SSML (exposed for tests).
std::string StyledTextToSsml(const std::string& text, const std::string& style);
bool IsKnownStyle(const std::string& style);

}  // namespace kiln::workflow
