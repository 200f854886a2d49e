#include "workflow/tts.h"

#include <espeak-ng/speak_lib.h>

#include <mutex>
#include <regex>
#include <vector>

#include "workflow/wav.h"

namespace kiln::workflow {
namespace {

struct Prosody {
  const char* name;
  const char* rate;
  const char* pitch;
  const char* volume;
};

// Style → SSML prosody (relative to the node's rate / pitch / volume).
constexpr Prosody kStyles[] = {
    {"neutral", "100%", "+0%", "+0%"},   {"cheerful", "110%", "+20%", "+10%"},
    {"excited", "125%", "+35%", "+20%"}, {"calm", "85%", "-10%", "-10%"},
    {"sad", "80%", "-25%", "-20%"},      {"serious", "95%", "-15%", "+0%"},
    {"whisper", "90%", "-5%", "-60%"},
};

const Prosody* FindStyle(const std::string& s) {
  for (const auto& p : kStyles) {
    if (s == p.name) return &p;
  }
  return nullptr;
}

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::mutex g_espeak_mu;
int g_sample_rate = 0;  // 0: not initialised; < 0: initialisation failed

struct SynthState {
  std::vector<int16_t>* samples;
  std::chrono::steady_clock::time_point deadline;
  const std::atomic<bool>* cancelled;
  bool stopped = false;
};
SynthState* g_state = nullptr;  // under g_espeak_mu

int OnSynth(short* wav, int num_samples, espeak_EVENT*) {
  if (g_state == nullptr) return 1;
  if ((g_state->cancelled != nullptr && g_state->cancelled->load()) ||
      std::chrono::steady_clock::now() >= g_state->deadline) {
    g_state->stopped = true;
    return 1;
  }
  if (wav != nullptr && num_samples > 0)
    g_state->samples->insert(g_state->samples->end(), wav, wav + num_samples);
  return 0;
}

}  // namespace

bool IsKnownStyle(const std::string& style) { return style.empty() || FindStyle(style) != nullptr; }

Status TtsOptions::Validate() const {
  if (rate_wpm < 80 || rate_wpm > 450)
    return Status::InvalidArgument("rate must be in [80, 450] words per minute");
  if (pitch < 0 || pitch > 100) return Status::InvalidArgument("pitch must be in [0, 100]");
  if (volume < 0 || volume > 200) return Status::InvalidArgument("volume must be in [0, 200]");
  if (!IsKnownStyle(style)) return Status::InvalidArgument("unknown style '" + style + "'");
  if (voice.empty() || voice.find_first_of("<>\"&") != std::string::npos) {
    return Status::InvalidArgument("invalid voice name");
  }
  return Status::Ok();
}

std::string StyledTextToSsml(const std::string& text, const std::string& style) {
  static const std::regex kMarker(R"(\[([a-z]+)\])");
  std::string out = "<speak>";
  std::string current = style.empty() ? "neutral" : style;
  auto add = [&](const std::string& segment) {
    if (segment.find_first_not_of(" \t\r\n") == std::string::npos) return;
    const Prosody* p = FindStyle(current);
    if (p == nullptr) p = &kStyles[0];
    out += std::string("<prosody rate=\"") + p->rate + "\" pitch=\"" + p->pitch + "\" volume=\"" +
           p->volume + "\">" + XmlEscape(segment) + "</prosody>";
  };
  size_t last = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kMarker);
       it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[1].str();
    if (FindStyle(name) == nullptr) continue;  // not a style: left in the text
    add(text.substr(last, static_cast<size_t>(it->position()) - last));
    current = name;
    last = static_cast<size_t>(it->position() + it->length());
  }
  add(text.substr(last));
  out += "</speak>";
  return out;
}

StatusOr<TtsAudio> Synthesize(const std::string& text, const TtsOptions& o,
                              std::chrono::steady_clock::time_point deadline,
                              const std::atomic<bool>* cancelled) {
  KILN_RETURN_IF_ERROR(o.Validate());
  std::lock_guard<std::mutex> lock(g_espeak_mu);
  if (g_sample_rate == 0) {
    g_sample_rate =
        espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200, nullptr, espeakINITIALIZE_DONT_EXIT);
    if (g_sample_rate <= 0) g_sample_rate = -1;
    espeak_SetSynthCallback(OnSynth);
  }
  if (g_sample_rate < 0) {
    return Status::Unavailable("espeak-ng could not be initialised (is espeak-ng-data installed?)");
  }
  if (espeak_SetVoiceByName(o.voice.c_str()) != EE_OK) {
    return Status::InvalidArgument("espeak-ng has no voice '" + o.voice + "'");
  }
  espeak_SetParameter(espeakRATE, o.rate_wpm, 0);
  espeak_SetParameter(espeakPITCH, o.pitch, 0);
  espeak_SetParameter(espeakVOLUME, o.volume, 0);
  TtsAudio audio;
  audio.ssml = o.ssml ? text : StyledTextToSsml(text, o.style);
  std::vector<int16_t> samples;
  SynthState state{&samples, deadline, cancelled};
  g_state = &state;
  const espeak_ERROR err = espeak_Synth(audio.ssml.c_str(), audio.ssml.size() + 1, 0, POS_CHARACTER,
                                        0, espeakCHARS_UTF8 | espeakSSML, nullptr, nullptr);
  espeak_Synchronize();
  g_state = nullptr;
  if (state.stopped) {
    if (cancelled != nullptr && cancelled->load())
      return Status::Aborted("speech synthesis cancelled");
    return Status::Unavailable("speech synthesis timed out");
  }
  if (err != EE_OK)
    return Status::Internal("espeak-ng failed to synthesise (error " + std::to_string(err) + ")");
  audio.sample_rate = g_sample_rate;
  audio.num_samples = static_cast<int64_t>(samples.size());
  audio.duration_s = static_cast<double>(samples.size()) / g_sample_rate;
  audio.wav = WriteWav(samples, g_sample_rate);
  return audio;
}

}  // namespace kiln::workflow
