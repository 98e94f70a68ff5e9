// Checks files from WriteSafetensors with tests/safetensors_reader.py, a
// reader written from the format description with numpy, so that a bug
// shared by our writer and our reader cannot hide.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "nlohmann/json.hpp"

namespace quantmt::checkpoint {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kPython[] = "/usr/bin/python3";

std::string ShellQuote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Exit status of a shell command, or -1 if it did not exit normally.
int RunShell(const std::string& command) {
  const int status = std::system(command.c_str());
  return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class SafetensorsPythonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kPython, X_OK) != 0) GTEST_SKIP() << kPython << " not found";
    if (RunShell(std::string(kPython) + " -c 'import numpy' >/dev/null 2>&1") != 0) {
      GTEST_SKIP() << "numpy is not importable by " << kPython;
    }
    const char* source_dir = std::getenv("QUANTMT_SOURCE_DIR");
    if (source_dir == nullptr) GTEST_SKIP() << "QUANTMT_SOURCE_DIR is not set (ctest sets it)";
    script_ = std::string(source_dir) + "/tests/safetensors_reader.py";
    ASSERT_TRUE(std::filesystem::exists(script_)) << script_;

    std::string pattern = ::testing::TempDir() + "safetensors_python_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
  }
  void TearDown() override {
    if (dir_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Adds a tensor to the file and its expectation. `values` are the float64
  // (or, for integer dtypes, integer) values the bytes stand for.
  template <typename T>
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<T> stored,
           Json values) {
    stored_.push_back(std::make_shared<std::vector<T>>(std::move(stored)));
    const auto& data = *std::static_pointer_cast<std::vector<T>>(stored_.back());
    tensors_.push_back({name, dtype, shape, data.data(), data.size() * sizeof(T)});
    expect_["tensors"][name] = {{"dtype", DTypeName(dtype)}, {"shape", shape}, {"values", values}};
  }

  // Writes the file and the expectation; returns the reader's exit status.
  int WriteAndCheck(const std::map<std::string, std::string>& metadata = {}) {
    const std::string file = dir_ + "/model.safetensors";
    const std::string expect_path = dir_ + "/expect.json";
    EXPECT_TRUE(WriteSafetensors(file, tensors_, metadata).ok());
    if (!metadata.empty()) expect_["metadata"] = metadata;
    std::ofstream(expect_path) << expect_.dump(2);
    return RunReader(file, expect_path);
  }

  // Runs the Python reader on `file`; returns its exit status.
  int RunReader(const std::string& file, const std::string& expect_path,
                const std::string& redirect = "") const {
    return RunShell(std::string(kPython) + " " + ShellQuote(script_) + " " + ShellQuote(file) +
                    " --expect " + ShellQuote(expect_path) + redirect);
  }

  // Several dtypes, multi-dimensional and zero-size tensors. Half-precision
  // values are given as bit patterns with their exact float64 meaning.
  void AddStandardTensors() {
    Add<float>(
        "encoder.layers.0.self_attn.q_proj.weight", DType::kF32, {2, 3},
        {1.f, -2.5f, 0.1f, std::numeric_limits<float>::max(),
         std::numeric_limits<float>::denorm_min(), -0.f},
        {1.0, -2.5, static_cast<double>(0.1f),
         static_cast<double>(std::numeric_limits<float>::max()), std::ldexp(1.0, -149), -0.0});
    Add<uint16_t>("f16", DType::kF16, {2, 3}, {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555, 0x8000},
                  {1.0, -2.0, 65504.0, std::ldexp(1.0, -24), 0.333251953125, -0.0});
    Add<uint16_t>("bf16", DType::kBF16, {3}, {0x3F80, 0xC0A0, 0x3EAB}, {1.0, -5.0, 0.333984375});
    Add<int8_t>("i8", DType::kI8, {2, 2}, {-128, 127, 0, -1}, {-128, 127, 0, -1});
    Add<uint8_t>("u8", DType::kU8, {1, 2, 2}, {0, 255, 1, 128}, {0, 255, 1, 128});
    Add<int64_t>("i64", DType::kI64, {3},
                 {std::numeric_limits<int64_t>::min(), 9007199254740993, -1},
                 {std::numeric_limits<int64_t>::min(), 9007199254740993, -1});
    Add<int32_t>("i32", DType::kI32, {2}, {-2147483647 - 1, 2147483647},
                 {-2147483647 - 1, 2147483647});
    Add<float>("empty", DType::kF32, {0, 5}, {}, Json::array());
  }

  std::string script_;
  std::string dir_;
  std::vector<std::shared_ptr<void>> stored_;
  std::vector<TensorToWrite> tensors_;
  Json expect_ = {{"tensors", Json::object()}};
};

TEST_F(SafetensorsPythonTest, IndependentReaderAgrees) {
  AddStandardTensors();
  EXPECT_EQ(WriteAndCheck({{"source", "unit test"}, {"dtype", "mixed"}}), 0);
}

// The checks must be able to fail: each wrong expectation is caught.
TEST_F(SafetensorsPythonTest, WrongValueIsCaught) {
  AddStandardTensors();
  expect_["tensors"]["f16"]["values"][5] = 0.0;  // stored -0.0: differs in the sign bit
  EXPECT_EQ(WriteAndCheck(), 1);
}

TEST_F(SafetensorsPythonTest, WrongIntegerIsCaught) {
  AddStandardTensors();
  expect_["tensors"]["i64"]["values"][1] = 9007199254740992;  // not representable in float64
  EXPECT_EQ(WriteAndCheck(), 1);
}

TEST_F(SafetensorsPythonTest, WrongShapeIsCaught) {
  AddStandardTensors();
  expect_["tensors"]["u8"]["shape"] = {2, 2};
  EXPECT_EQ(WriteAndCheck(), 1);
}

TEST_F(SafetensorsPythonTest, WrongDtypeIsCaught) {
  AddStandardTensors();
  expect_["tensors"]["bf16"]["dtype"] = "F16";
  EXPECT_EQ(WriteAndCheck(), 1);
}

TEST_F(SafetensorsPythonTest, MissingTensorIsCaught) {
  AddStandardTensors();
  expect_["tensors"]["not.written"] = {{"dtype", "F32"}, {"shape", {1}}, {"values", {1.0}}};
  EXPECT_EQ(WriteAndCheck(), 1);
}

TEST_F(SafetensorsPythonTest, WrongMetadataIsCaught) {
  AddStandardTensors();
  expect_["metadata"] = {{"source", "something else"}};
  const std::string file = dir_ + "/model.safetensors";
  const std::string expect_path = dir_ + "/expect.json";
  ASSERT_TRUE(WriteSafetensors(file, tensors_, {{"source", "unit test"}}).ok());
  std::ofstream(expect_path) << expect_.dump(2);
  EXPECT_EQ(RunReader(file, expect_path), 1);
}

TEST_F(SafetensorsPythonTest, TruncatedFileIsRefused) {
  AddStandardTensors();
  ASSERT_EQ(WriteAndCheck(), 0);
  const std::string file = dir_ + "/model.safetensors";
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 1);
  EXPECT_EQ(RunReader(file, dir_ + "/expect.json", " 2>/dev/null"), 2);
}

}  // namespace
}  // namespace quantmt::checkpoint
