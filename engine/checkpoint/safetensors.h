// Reading and writing the safetensors format
// (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//    "__metadata__": {"key": "value"}}
// then the data buffer. Offsets are relative to the buffer start.
//
// Plain C++ (no torch) so that fuzzers and tools can use it. The reader reads
// the whole file into memory and validates everything before handing out a view: a file it
// cannot fully trust is refused with an error naming the file and tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt::checkpoint {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" -> kF32, ...; InvalidArgument for names we do not support.
absl::StatusOr<DType> ParseDType(const std::string& name);
const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

// A tensor inside a file read into memory. `data` stays valid while the
// SafetensorsFile lives.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t NumElements() const;
};

class SafetensorsFile {
 public:
  // Reads and validates `path`: header length within the file, well-formed
  // JSON, known dtypes, non-negative shapes, offsets inside the buffer,
  // sizes that equal numel * dtype size, no overlapping tensors.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  // Same validation over bytes already in memory (used by fuzzers and tests).
  // The bytes are copied.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string bytes,
                                                                    const std::string& origin);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensors in file order (by data offset).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr if absent.
  const TensorView* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t file_size() const { return size_; }

 private:
  SafetensorsFile() = default;
  absl::Status Parse();

  std::string path_;
  const uint8_t* base_ = nullptr;  // whole file
  size_t size_ = 0;
  std::string owned_;  // the file's bytes
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_, for Find()
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: the bytes are copied out during WriteSafetensors.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Writes a safetensors file (tensors in the given order, header padded with
// spaces to a multiple of 8 bytes so that data stays aligned). Writes to a
// temporary file and renames it, so a crash never leaves a half-written file.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace quantmt::checkpoint
