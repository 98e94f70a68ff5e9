#include "checkpoint/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

namespace quantmt::checkpoint {
namespace {

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "safetensors_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string WriteBytes(const std::string& name, const std::string& bytes) const {
    const std::string path = Path(name);
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(out.good()) << path;
    return path;
  }

  static std::string ReadBytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  std::string dir_;
};

std::string LittleEndian64(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A file from a hand-written header and data buffer.
std::string FileBytes(const std::string& header, const std::string& data) {
  return LittleEndian64(header.size()) + header + data;
}

// Asserts the code and that the message contains every one of `parts`.
void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::vector<std::string>& parts) {
  EXPECT_EQ(status.code(), code) << status;
  for (const std::string& part : parts) {
    EXPECT_NE(status.message().find(part), absl::string_view::npos)
        << "message '" << status.message() << "' lacks '" << part << "'";
  }
}

template <typename T>
TensorToWrite Tensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                     const std::vector<T>& values) {
  return TensorToWrite{name, dtype, std::move(shape), values.data(), values.size() * sizeof(T)};
}

// ------------------------------------------------------------ dtypes

TEST(DTypeTest, NamesSizesAndParsingAgree) {
  const std::vector<std::pair<DType, size_t>> all = {
      {DType::kF64, 8}, {DType::kF32, 4}, {DType::kF16, 2}, {DType::kBF16, 2}, {DType::kI64, 8},
      {DType::kI32, 4}, {DType::kI16, 2}, {DType::kI8, 1},  {DType::kU8, 1},   {DType::kBool, 1}};
  for (const auto& [dtype, size] : all) {
    EXPECT_EQ(DTypeSize(dtype), size) << DTypeName(dtype);
    absl::StatusOr<DType> parsed = ParseDType(DTypeName(dtype));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, dtype);
  }
  EXPECT_STREQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_STREQ(DTypeName(DType::kBool), "BOOL");
  ExpectError(ParseDType("f32").status(), absl::StatusCode::kInvalidArgument, {"'f32'"});
}

TEST(TensorViewTest, NumElements) {
  TensorView view;
  EXPECT_EQ(view.NumElements(), 1);  // a scalar
  view.shape = {2, 3, 4};
  EXPECT_EQ(view.NumElements(), 24);
  view.shape = {5, 0, 7};
  EXPECT_EQ(view.NumElements(), 0);
  view.shape = {int64_t{1} << 62, 4};
  EXPECT_EQ(view.NumElements(), -1);  // overflow is reported, not undefined
}

// ------------------------------------------------------------ round trip

TEST_F(SafetensorsTest, RoundTripEveryDtypeWithMetadata) {
  const std::vector<double> f64 = {1.5, -2.25, 1e300};
  const std::vector<float> f32 = {0.f, -1.f, 3.5f, 1e-30f, 7.f, 8.f};
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x7BFF, 0x0001};
  const std::vector<uint16_t> bf16 = {0x3F80, 0xBF80, 0x7F7F};
  const std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), -1, 0,
                                    std::numeric_limits<int64_t>::max()};
  const std::vector<int32_t> i32 = {-7, 7};
  const std::vector<int16_t> i16 = {-300, 300, 0};
  const std::vector<int8_t> i8 = {-128, 127, 0, 1, 2};
  const std::vector<uint8_t> u8 = {0, 255, 17};
  const std::vector<uint8_t> boolean = {1, 0, 1, 1};
  const std::vector<float> empty;
  const std::vector<float> scalar = {42.f};
  std::vector<TensorToWrite> tensors = {
      Tensor("f64", DType::kF64, {3}, f64),
      Tensor("encoder.layers.0.self_attn.q_proj.weight", DType::kF32, {2, 3}, f32),
      Tensor("f16", DType::kF16, {2, 2}, f16),
      Tensor("bf16", DType::kBF16, {3, 1}, bf16),
      Tensor("i64", DType::kI64, {4}, i64),
      Tensor("i32", DType::kI32, {1, 2}, i32),
      Tensor("i16", DType::kI16, {3}, i16),
      Tensor("i8", DType::kI8, {5}, i8),
      Tensor("u8", DType::kU8, {3}, u8),
      Tensor("bool", DType::kBool, {2, 2}, boolean),
      Tensor("empty", DType::kF32, {0, 4}, empty),
      Tensor("scalar", DType::kF32, {}, scalar),
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcode"}};
  const std::string path = Path("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, metadata).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->path(), path);
  EXPECT_EQ((*file)->metadata(), metadata);
  EXPECT_EQ((*file)->file_size(), std::filesystem::file_size(path));
  ASSERT_EQ((*file)->tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    // The writer lays tensors out in the given order, so file order matches.
    const TensorView& view = (*file)->tensors()[i];
    const TensorToWrite& want = tensors[i];
    EXPECT_EQ(view.name, want.name);
    EXPECT_EQ(view.dtype, want.dtype) << want.name;
    EXPECT_EQ(view.shape, want.shape) << want.name;
    ASSERT_EQ(view.nbytes, want.nbytes) << want.name;
    if (want.nbytes > 0) {
      EXPECT_EQ(std::memcmp(view.data, want.data, want.nbytes), 0) << want.name;
    }
    EXPECT_EQ((*file)->Find(want.name), &view);
  }
  EXPECT_EQ((*file)->Find("missing"), nullptr);

  // The header is padded so that the data buffer starts 8-byte aligned.
  const std::string bytes = ReadBytes(path);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ((8 + header_size) % 8, 0u);

  // FromBytes sees the same file.
  auto copy = SafetensorsFile::FromBytes(bytes, "in-memory");
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ((*copy)->tensors().size(), tensors.size());
  EXPECT_EQ((*copy)->path(), "in-memory");
}

TEST_F(SafetensorsTest, NoTensorsNoMetadata) {
  const std::string path = Path("empty.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->tensors().empty());
  EXPECT_TRUE((*file)->metadata().empty());
  // No "__metadata__" key when there is no metadata.
  EXPECT_EQ(ReadBytes(path).find("__metadata__"), std::string::npos);
}

TEST_F(SafetensorsTest, TensorsAreListedByDataOffset) {
  const std::string path = WriteBytes(
      "order.safetensors", FileBytes(R"({"b": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]},
                    "a": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]},
                    "c": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})",
                                     "\x01\x02\x03\x04\x05\x06"));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), 3u);
  EXPECT_EQ((*file)->tensors()[0].name, "c");
  EXPECT_EQ((*file)->tensors()[1].name, "b");
  EXPECT_EQ((*file)->tensors()[2].name, "a");
  EXPECT_EQ((*file)->Find("a")->data[0], 5);
}

TEST_F(SafetensorsTest, EmptyTensorsOverlapNothing) {
  const std::string path =
      WriteBytes("empties.safetensors",
                 FileBytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "e1": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
                    "e2": {"dtype": "I64", "shape": [3, 0], "data_offsets": [4, 4]}})",
                           std::string(8, '\0')));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 3u);
}

TEST_F(SafetensorsTest, OverwritesAnExistingFile) {
  const std::string path = WriteBytes("model.safetensors", "old contents");
  const std::vector<int32_t> values = {1, 2, 3};
  ASSERT_TRUE(WriteSafetensors(path, {Tensor("x", DType::kI32, {3}, values)}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 1u);
}

// ------------------------------------------------------------ corrupt files

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  const std::string path = Path("nope.safetensors");
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kNotFound, {path});
}

TEST_F(SafetensorsTest, DirectoryIsRefused) {
  ExpectError(SafetensorsFile::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
              {dir_, "not a regular file"});
}

TEST_F(SafetensorsTest, FifoIsRefusedWithoutBlocking) {
  const std::string path = Path("fifo");
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0) << std::strerror(errno);
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
              {path, "not a regular file"});
}

TEST_F(SafetensorsTest, EmptyFile) {
  const std::string path = WriteBytes("empty.safetensors", "");
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": header:", "empty"});
  ExpectError(SafetensorsFile::FromBytes("", "mem").status(), absl::StatusCode::kDataLoss,
              {"mem: header:", "empty"});
}

TEST_F(SafetensorsTest, FileShorterThanLengthPrefix) {
  const std::string path = WriteBytes("short.safetensors", std::string("\x02\0\0\0\0", 5));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": header:", "5 bytes"});
}

TEST_F(SafetensorsTest, HeaderLengthPastEndOfFile) {
  const std::string header = R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}})";
  const std::string path =
      WriteBytes("past.safetensors", LittleEndian64(header.size() + 100) + header + "x");
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": header:", "past the end of the file"});
}

TEST_F(SafetensorsTest, HeaderLengthHuge) {
  // 2^63 and 2^64-1 must not wrap around when added to the prefix size.
  for (uint64_t length : {uint64_t{1} << 63, std::numeric_limits<uint64_t>::max()}) {
    const std::string path = WriteBytes("huge.safetensors", LittleEndian64(length) + "{}");
    ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
                {path + ": header:", std::to_string(length)});
  }
}

TEST_F(SafetensorsTest, HeaderLengthOverLimit) {
  // The bytes are there, but a header this large is refused before parsing.
  const uint64_t length = (uint64_t{100} << 20) + 1;
  std::string bytes = LittleEndian64(length) + std::string(length, ' ');
  ExpectError(SafetensorsFile::FromBytes(std::move(bytes), "big").status(),
              absl::StatusCode::kInvalidArgument, {"big: header:", "exceeds the limit"});
}

TEST_F(SafetensorsTest, TruncatedData) {
  const std::vector<float> a = {1, 2, 3, 4};
  const std::vector<float> b = {5, 6, 7, 8};
  const std::string path = Path("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(
                  path, {Tensor("a", DType::kF32, {4}, a), Tensor("b", DType::kF32, {2, 2}, b)})
                  .ok());
  const std::string bytes = ReadBytes(path);
  WriteBytes("model.safetensors", bytes.substr(0, bytes.size() - 3));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'b':", "past the end of the data buffer"});
}

TEST_F(SafetensorsTest, EveryTruncationIsRefused) {
  const std::vector<int16_t> values = {1, 2, 3};
  const std::string path = Path("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {Tensor("a", DType::kI16, {3}, values)}, {{"k", "v"}}).ok());
  const std::string bytes = ReadBytes(path);
  for (size_t size = 0; size < bytes.size(); ++size) {
    auto file = SafetensorsFile::FromBytes(bytes.substr(0, size), "cut");
    EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss) << size << ": " << file.status();
  }
}

TEST_F(SafetensorsTest, InvalidJson) {
  const std::string path = WriteBytes("bad.safetensors", FileBytes(R"({"a": {"dtype": )", ""));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": header:", "not valid JSON"});
}

TEST_F(SafetensorsTest, JsonNotAnObject) {
  const std::string path = WriteBytes("array.safetensors", FileBytes("[1, 2, 3]", ""));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": header:", "expected a JSON object, got array"});
}

TEST_F(SafetensorsTest, JsonNestedTooDeep) {
  const std::string path = WriteBytes(
      "deep.safetensors",
      FileBytes("{\"a\": " + std::string(10000, '[') + std::string(10000, ']') + "}", ""));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": header:", "nested"});
}

TEST_F(SafetensorsTest, DuplicateTensorName) {
  const std::string path = WriteBytes(
      "dup.safetensors", FileBytes(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                    "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                                   "xy"));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'a':", "twice"});
}

TEST_F(SafetensorsTest, EntryNotAnObject) {
  const std::string path = WriteBytes("entry.safetensors", FileBytes(R"({"w": [1, 2]})", ""));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'w':", "must be an object"});
}

TEST_F(SafetensorsTest, MissingDtype) {
  const std::string path = WriteBytes(
      "nodtype.safetensors", FileBytes(R"({"w": {"shape": [1], "data_offsets": [0, 1]}})", "x"));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'w':", "'dtype'"});
}

TEST_F(SafetensorsTest, UnknownDtype) {
  const std::string path = WriteBytes(
      "f8.safetensors",
      FileBytes(R"({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}})", "x"));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
              {path + ": tensor 'w':", "unsupported dtype 'F8_E4M3'"});
}

TEST_F(SafetensorsTest, NegativeShape) {
  const std::string path = WriteBytes(
      "neg.safetensors",
      FileBytes(R"({"w": {"dtype": "U8", "shape": [2, -1], "data_offsets": [0, 0]}})", ""));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'w':", "shape[1] is -1", "non-negative"});
}

TEST_F(SafetensorsTest, NonIntegerShape) {
  const std::string path = WriteBytes(
      "float.safetensors",
      FileBytes(R"({"w": {"dtype": "U8", "shape": [1.5], "data_offsets": [0, 1]}})", "x"));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'w':", "shape[0]"});
}

TEST_F(SafetensorsTest, ShapeProductOverflows) {
  const std::string path = WriteBytes("overflow.safetensors", FileBytes(R"({"w": {"dtype": "F32",
                          "shape": [4611686018427387904, 4611686018427387904],
                          "data_offsets": [0, 0]}})",
                                                                        ""));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'w':", "too large"});
  // numel fits in int64, numel * 8 does not.
  const std::string path2 = WriteBytes(
      "overflow2.safetensors", FileBytes(R"({"w": {"dtype": "F64", "shape": [2305843009213693952],
                          "data_offsets": [0, 0]}})",
                                         ""));
  ExpectError(SafetensorsFile::Open(path2).status(), absl::StatusCode::kDataLoss,
              {path2 + ": tensor 'w':", "too large"});
}

TEST_F(SafetensorsTest, ShapeDoesNotMatchOffsets) {
  const std::string path =
      WriteBytes("mismatch.safetensors",
                 FileBytes(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})",
                           std::string(12, '\0')));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'w':", "hold 12 bytes", "needs 16"});
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
  const std::string path = WriteBytes(
      "range.safetensors",
      FileBytes(R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}})", "abcd"));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'w':", "past the end of the data buffer (4 bytes"});
}

TEST_F(SafetensorsTest, OffsetsMalformed) {
  for (const char* offsets : {"[0]", "[0, 1, 2]", "[-1, 0]", "[0.0, 1]", "\"0-1\""}) {
    const std::string path = WriteBytes(
        "offsets.safetensors",
        FileBytes(
            std::string(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": )") + offsets + "}}",
            "x"));
    ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
                {path + ": tensor 'w':", "data_offsets"});
  }
}

TEST_F(SafetensorsTest, EndBeforeBegin) {
  const std::string path = WriteBytes(
      "reversed.safetensors",
      FileBytes(R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [4, 2]}})", "abcd"));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'w':", "end before they begin"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  const std::string path =
      WriteBytes("overlap.safetensors",
                 FileBytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                           std::string(12, '\0')));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'b':", "overlap tensor 'a'"});
}

TEST_F(SafetensorsTest, TensorInsideAnother) {
  const std::string path =
      WriteBytes("inside.safetensors",
                 FileBytes(R"({"big": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
                    "c": {"dtype": "U8", "shape": [1], "data_offsets": [6, 7]},
                    "b": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}})",
                           std::string(8, '\0')));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": tensor 'b':", "overlap tensor 'big'"});
}

TEST_F(SafetensorsTest, MetadataValueNotString) {
  const std::string path =
      WriteBytes("meta.safetensors", FileBytes(R"({"__metadata__": {"ok": "v", "n": 1}})", ""));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": header:", "__metadata__", "'n'"});
}

TEST_F(SafetensorsTest, MetadataNotObject) {
  const std::string path =
      WriteBytes("meta2.safetensors", FileBytes(R"({"__metadata__": ["a", "b"]})", ""));
  ExpectError(SafetensorsFile::Open(path).status(), absl::StatusCode::kDataLoss,
              {path + ": header:", "__metadata__"});
}

// Flips every byte of a small valid file to a few values: whatever the
// outcome, the reader must not crash or read out of bounds (run under ASan).
TEST_F(SafetensorsTest, ByteFlipsNeverCrash) {
  const std::vector<float> a = {1, 2};
  const std::vector<int8_t> b = {3};
  const std::string path = Path("model.safetensors");
  ASSERT_TRUE(
      WriteSafetensors(path, {Tensor("a", DType::kF32, {2}, a), Tensor("b", DType::kI8, {1, 1}, b)},
                       {{"k", "v"}})
          .ok());
  const std::string bytes = ReadBytes(path);
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (char value : {'\0', '\xff', '"', '[', '9', '-', ' '}) {
      std::string mutated = bytes;
      mutated[i] = value;
      auto file = SafetensorsFile::FromBytes(mutated, "mutated");
      if (!file.ok()) continue;
      for (const TensorView& view : (*file)->tensors()) {
        EXPECT_EQ(view.nbytes, static_cast<size_t>(view.NumElements()) * DTypeSize(view.dtype));
        uint64_t sum = 0;  // touch every byte so ASan checks the bounds
        for (size_t k = 0; k < view.nbytes; ++k) sum += view.data[k];
        (void)sum;
      }
    }
  }
}

// ------------------------------------------------------------ writer checks

TEST_F(SafetensorsTest, WriterRefusesDuplicateNames) {
  const std::vector<float> v = {1};
  const std::string path = Path("dup.safetensors");
  ExpectError(
      WriteSafetensors(path, {Tensor("x", DType::kF32, {1}, v), Tensor("x", DType::kF32, {1}, v)}),
      absl::StatusCode::kInvalidArgument, {path + ": tensor 'x':", "twice"});
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_F(SafetensorsTest, WriterRefusesSizeMismatch) {
  const std::vector<float> v = {1, 2, 3};
  const std::string path = Path("size.safetensors");
  ExpectError(WriteSafetensors(path, {Tensor("x", DType::kF32, {2, 2}, v)}),
              absl::StatusCode::kInvalidArgument,
              {path + ": tensor 'x':", "nbytes is 12", "needs 16"});
  ExpectError(WriteSafetensors(path, {Tensor("y", DType::kF32, {-3}, v)}),
              absl::StatusCode::kInvalidArgument, {path + ": tensor 'y':", "negative"});
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(SafetensorsTest, WriterRefusesReservedEmptyAndNullTensors) {
  const std::vector<float> v = {1};
  const std::string path = Path("bad.safetensors");
  ExpectError(WriteSafetensors(path, {Tensor("__metadata__", DType::kF32, {1}, v)}),
              absl::StatusCode::kInvalidArgument, {"reserved"});
  ExpectError(WriteSafetensors(path, {Tensor("", DType::kF32, {1}, v)}),
              absl::StatusCode::kInvalidArgument, {"reserved"});
  ExpectError(WriteSafetensors(path, {TensorToWrite{"n", DType::kF32, {1}, nullptr, 4}}),
              absl::StatusCode::kInvalidArgument, {"tensor 'n'", "null"});
}

TEST_F(SafetensorsTest, WriterRefusesInvalidUtf8) {
  const std::vector<float> v = {1};
  const std::string path = Path("utf8.safetensors");
  ExpectError(WriteSafetensors(path, {Tensor("bad\xff", DType::kF32, {1}, v)}),
              absl::StatusCode::kInvalidArgument, {path, "UTF-8"});
  ExpectError(WriteSafetensors(path, {}, {{"k", "\xc3"}}), absl::StatusCode::kInvalidArgument,
              {path, "UTF-8"});
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_F(SafetensorsTest, WriterReportsMissingDirectory) {
  const std::string path = Path("no/such/dir/model.safetensors");
  ExpectError(WriteSafetensors(path, {}), absl::StatusCode::kNotFound, {path + ".tmp"});
}

// A write that fails part way (here: the file size limit, standing in for a
// full disk) returns an error and leaves neither a .tmp nor a clobbered file.
TEST_F(SafetensorsTest, WriterReportsWriteErrors) {
  const std::string path = WriteBytes("model.safetensors", "previous");
  const std::vector<uint8_t> big(1 << 20, 7);

  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of a signal
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const absl::Status status = WriteSafetensors(path, {Tensor("big", DType::kU8, {1 << 20}, big)});
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);

  ExpectError(status, absl::StatusCode::kOutOfRange, {path + ".tmp", "write failed"});
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(ReadBytes(path), "previous");
}

}  // namespace
}  // namespace quantmt::checkpoint
