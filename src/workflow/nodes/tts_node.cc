// tts: speech for a text (espeak-ng, see tts.h).
//   text: template     voice: en     rate: 175 (wpm)     pitch: 50     volume: 100
//   style: cheerful | calm | ... (inline "[style]" markers also switch)     ssml: false
// Output: {duration_s, sample_rate, num_samples, format: "wav", audio_base64[, path]}; the same
// goes out as a tts_audio event. Text that renders empty (or gives no speech) is an error, not a
// silent WAV. With Services' audio_dir set the WAV is also written there.
#include <fstream>

#include "workflow/node.h"
#include "workflow/nodes/node_factories.h"
#include "workflow/services.h"
#include "workflow/tts.h"
#include "workflow/wav.h"

namespace kiln::workflow {
namespace {

class TtsNode final : public Node {
 public:
  Template text_;
  TtsOptions options_;
  std::string id_;

  StatusOr<Json> Run(NodeContext& ctx) const override {
    KILN_ASSIGN_OR_RETURN(std::string text, text_.Render(*ctx.vars));
    ctx.input = {{"text", text}};
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
      return Status::InvalidArgument("the text to speak is empty");
    }
    KILN_ASSIGN_OR_RETURN(TtsAudio audio, Synthesize(text, options_, ctx.deadline, ctx.cancelled));
    ctx.input = {{"text", text}, {"ssml", audio.ssml}, {"voice", options_.voice}};
    if (audio.num_samples == 0)
      return Status::InvalidArgument("the text gave no speech to synthesize");
    Json out = {{"duration_s", audio.duration_s},
                {"sample_rate", audio.sample_rate},
                {"num_samples", audio.num_samples},
                {"format", "wav"},
                {"audio_base64", Base64Encode(audio.wav)}};
    const std::string& dir = ctx.services->options().audio_dir;
    if (!dir.empty()) {
      const std::string run_id = (*ctx.vars)["sys"].value("run_id", "run");
      const std::string path = dir + "/" + run_id + "-" + id_ + ".wav";
      std::ofstream f(path, std::ios::binary);
      f.write(audio.wav.data(), static_cast<std::streamsize>(audio.wav.size()));
      if (!f) return Status::IOError("cannot write " + path);
      out["path"] = path;
    }
    if (ctx.emit) ctx.emit("tts_audio", out);
    return out;
  }
};

}  // namespace

StatusOr<std::unique_ptr<Node>> CreateTtsNode(const NodeSpec& spec, NodeFields& f) {
  auto node = std::make_unique<TtsNode>();
  node->id_ = spec.id;
  KILN_ASSIGN_OR_RETURN(node->text_, f.TemplateField("text", true));
  KILN_ASSIGN_OR_RETURN(node->options_.voice, f.String("voice", false, "en"));
  KILN_ASSIGN_OR_RETURN(double rate, f.Number("rate", 80, 450, 175));
  KILN_ASSIGN_OR_RETURN(double pitch, f.Number("pitch", 0, 100, 50));
  KILN_ASSIGN_OR_RETURN(double volume, f.Number("volume", 0, 200, 100));
  node->options_.rate_wpm = static_cast<int>(rate);
  node->options_.pitch = static_cast<int>(pitch);
  node->options_.volume = static_cast<int>(volume);
  KILN_ASSIGN_OR_RETURN(node->options_.style, f.String("style", false));
  if (!IsKnownStyle(node->options_.style)) {
    return f.Error("style", "unknown style '" + node->options_.style +
                                "' (neutral, cheerful, excited, calm, sad, serious, whisper)");
  }
  KILN_ASSIGN_OR_RETURN(node->options_.ssml, f.Bool("ssml", false));
  if (Status s = node->options_.Validate(); !s.ok()) return f.Error("voice", s.message());
  return std::unique_ptr<Node>(std::move(node));
}

}  // namespace kiln::workflow
