#include "model/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "model/test_data.h"

namespace kiln {
namespace {

// A safetensors image: 8-byte header length, header, data.
std::string Image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

StatusOr<std::shared_ptr<const SafetensorsFile>> ParseImage(const std::string& image) {
  // Copy into an exactly-sized heap buffer so ASan catches any read past the end.
  auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[image.size() + 1]);
  std::memcpy(buf.get(), image.data(), image.size());
  return SafetensorsFile::Parse(buf, buf.get(), image.size(), "test.safetensors");
}

std::string FloatBytes(std::initializer_list<float> values) {
  std::string s;
  for (float v : values) s.append(reinterpret_cast<const char*>(&v), 4);
  return s;
}

const std::string kHeader =
    R"({"__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "BF16", "shape": [2], "data_offsets": [16, 20]},
        "c": {"dtype": "I32", "shape": [1], "data_offsets": [20, 24]}})";

std::string GoodData() {
  std::string d = FloatBytes({1, 2, 3, 4});
  const uint16_t bf[2] = {0x3F80, 0xC000};  // 1.0, -2.0
  d.append(reinterpret_cast<const char*>(bf), 4);
  const int32_t i = 42;
  d.append(reinterpret_cast<const char*>(&i), 4);
  return d;
}

TEST(SafetensorsTest, ParsesValidFile) {
  auto f = ParseImage(Image(kHeader, GoodData()));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->tensors().size(), 3u);
  auto a = ReadSafetensorsFloat(**f, "a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (std::vector<float>{1, 2, 3, 4}));
  auto b = (*f)->GetTensor("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->dtype, DType::kBF16);
  EXPECT_EQ(b->ToFloatVector(), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(*ReadSafetensorsInt32(**f, "c"), (std::vector<int32_t>{42}));
  EXPECT_EQ((*f)->GetTensor("c").status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ((*f)->GetTensor("zzz").status().code(), StatusCode::kNotFound);
}

TEST(SafetensorsTest, RejectsMalformedHeaders) {
  const std::string data = GoodData();
  const std::vector<std::string> bad_headers = {
      "not json",
      "[]",
      R"({"a": 5})",
      R"({"a": {"dtype": "F32", "shape": [2, 2]}})",
      R"({"a": {"dtype": "F33", "shape": [2, 2], "data_offsets": [0, 16]}})",
      R"({"a": {"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 16]}})",
      R"({"a": {"dtype": "F32", "shape": [2, 2.5], "data_offsets": [0, 16]}})",
      R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})",   // size mismatch
      R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 0]}})",   // reversed
      R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [20, 36]}})",  // past the end
      R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 16]}})",
      R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 18446744073709551615]}})",
      // Regression: a zero dim must not hide two huge ones (numel overflow).
      R"({"a": {"dtype": "F32", "shape": [1099511627776, 1099511627776, 0], "data_offsets": [0, 0]}})",
      R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [-1, 15]}})",
      R"({"a": {"dtype": 7, "shape": [2, 2], "data_offsets": [0, 16]}})",
      // Regression: tensors sharing bytes loaded as each other's weights (garbage output).
      R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
          "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}})",
  };
  for (const std::string& h : bad_headers) {
    auto f = ParseImage(Image(h, data));
    EXPECT_FALSE(f.ok()) << h;
    if (!f.ok()) EXPECT_EQ(f.status().code(), StatusCode::kDataLoss) << h;
    // Errors name the file (the name was moved out before the error was built: ": tensor ...").
    if (!f.ok()) EXPECT_NE(f.status().message().find("test.safetensors: "), std::string::npos) << h;
  }
  // Header length past the end of the file, or absurd.
  std::string image = Image(kHeader, data);
  image[0] = static_cast<char>(0xFF);
  image[1] = static_cast<char>(0xFF);
  EXPECT_FALSE(ParseImage(image).ok());
  image[7] = static_cast<char>(0x7F);
  EXPECT_FALSE(ParseImage(image).ok());
}

TEST(SafetensorsTest, EveryTruncationFails) {
  const std::string image = Image(kHeader, GoodData());
  for (size_t n = 0; n < image.size(); ++n) {
    EXPECT_FALSE(ParseImage(image.substr(0, n)).ok()) << "prefix " << n;
  }
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/kiln_st_XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }
  void Write(const std::string& name, const std::string& content) const {
    std::ofstream(path_ + "/" + name, std::ios::binary) << content;
  }

 private:
  std::string path_;
};

TEST(SafetensorsTest, ShardedCheckpoint) {
  TempDir dir;
  dir.Write("model-00001-of-00002.safetensors",
            Image(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                  FloatBytes({1, 2})));
  dir.Write(
      "model-00002-of-00002.safetensors",
      Image(R"({"y": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", FloatBytes({3})));
  dir.Write("model.safetensors.index.json",
            R"({"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors",
                                               "y": "model-00002-of-00002.safetensors"}})");
  auto model = SafetensorsModel::Open(dir.path());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(model->num_tensors(), 2u);
  EXPECT_EQ(model->GetTensor("y")->ToFloatVector(), (std::vector<float>{3}));
  EXPECT_EQ(model->GetTensor("x")->ToFloatVector(), (std::vector<float>{1, 2}));
  // An index naming a tensor its shard lacks, or a path outside the directory, is an error.
  dir.Write("model.safetensors.index.json",
            R"({"weight_map": {"z": "model-00001-of-00002.safetensors"}})");
  EXPECT_FALSE(SafetensorsModel::Open(dir.path()).ok());
  dir.Write("model.safetensors.index.json", R"({"weight_map": {"x": "../etc/passwd"}})");
  EXPECT_FALSE(SafetensorsModel::Open(dir.path()).ok());
  dir.Write("model.safetensors.index.json", R"({"weight_map": [1]})");
  EXPECT_FALSE(SafetensorsModel::Open(dir.path()).ok());
}

// A HF directory whose checkpoint lacks a tensor, or has one of the wrong shape, fails to load
// with the tensor named.
TEST(SafetensorsTest, LoadModelNamesMissingAndMisshapenTensors) {
  const std::string src = testing::SharedPath("models/stories260K/hf");
  if (src.empty()) GTEST_SKIP() << "missing ../shared/models/stories260K/hf";
  TempDir dir;
  dir.Write("config.json", *ReadFileToString(src + "/config.json"));
  dir.Write(
      "model.safetensors",
      Image(
          R"({"model.embed_tokens.weight": {"dtype": "F32", "shape": [512, 64], "data_offsets": [0, 131072]}})",
          std::string(131072, '\0')));
  ModelOptions options;
  options.model_path = dir.path();
  auto model = LoadModel(options);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("model.layers.0.input_layernorm.weight"),
            std::string::npos)
      << model.status().ToString();
  dir.Write(
      "model.safetensors",
      Image(
          R"({"model.embed_tokens.weight": {"dtype": "F32", "shape": [512, 32], "data_offsets": [0, 65536]}})",
          std::string(65536, '\0')));
  model = LoadModel(options);
  ASSERT_FALSE(model.ok());
  options.model_path = dir.path() + "/nothing";
  EXPECT_EQ(LoadModel(options).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace kiln
