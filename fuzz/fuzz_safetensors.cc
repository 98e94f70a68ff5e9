// Arbitrary bytes as a safetensors file. A file the reader accepts must keep
// every promise of SafetensorsFile (views inside the file, sizes that match
// the shapes, file order without overlaps) and survive a round trip through
// WriteSafetensors and Open unchanged.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "fuzz_check.h"

namespace {

using quantmt::checkpoint::DTypeSize;
using quantmt::checkpoint::SafetensorsFile;
using quantmt::checkpoint::TensorToWrite;
using quantmt::checkpoint::TensorView;

void CheckViews(const SafetensorsFile& file) {
  const uint8_t* begin = nullptr;
  const uint8_t* furthest = nullptr;  // end of the non-empty tensors so far
  for (const TensorView& tensor : file.tensors()) {
    FUZZ_CHECK(file.Find(tensor.name) == &tensor, "Find returns the listed tensor");
    const int64_t numel = tensor.NumElements();
    FUZZ_CHECK(numel >= 0, "accepted shapes have a defined element count");
    FUZZ_CHECK(tensor.nbytes == static_cast<size_t>(numel) * DTypeSize(tensor.dtype),
               "nbytes matches shape and dtype");
    if (tensor.nbytes == 0) continue;
    FUZZ_CHECK(begin == nullptr || tensor.data >= begin, "tensors are in file order");
    FUZZ_CHECK(furthest == nullptr || tensor.data >= furthest, "tensors do not overlap");
    begin = tensor.data;
    furthest = tensor.data + tensor.nbytes;
    // Reads every byte, so that ASan sees a view that leaves the file.
    unsigned sum = 0;
    for (size_t i = 0; i < tensor.nbytes; ++i) sum += tensor.data[i];
    (void)sum;
  }
}

// Writes what was read and reads it back: names, dtypes, shapes, bytes and
// metadata must all survive.
void CheckRoundTrip(const SafetensorsFile& file) {
  std::vector<TensorToWrite> tensors;
  for (const TensorView& tensor : file.tensors()) {
    // The writer refuses names that the format reserves or leaves
    // ambiguous; the reader tolerates them in files written by others.
    if (tensor.name.empty()) return;
    tensors.push_back({tensor.name, tensor.dtype, tensor.shape, tensor.data, tensor.nbytes});
  }
  static const std::string path =
      (std::filesystem::temp_directory_path() /
       ("quantmt_fuzz_safetensors." + std::to_string(::getpid()) + ".safetensors"))
          .string();
  const absl::Status written =
      quantmt::checkpoint::WriteSafetensors(path, tensors, file.metadata());
  FUZZ_CHECK(written.ok(), "what the reader accepted, the writer writes");
  auto reread = SafetensorsFile::Open(path);
  ::unlink(path.c_str());
  FUZZ_CHECK(reread.ok(), "what the writer wrote, the reader reads");
  const SafetensorsFile& copy = **reread;
  FUZZ_CHECK(copy.metadata() == file.metadata(), "metadata survives");
  FUZZ_CHECK(copy.tensors().size() == file.tensors().size(), "every tensor survives");
  for (const TensorView& tensor : file.tensors()) {
    const TensorView* other = copy.Find(tensor.name);
    FUZZ_CHECK(other != nullptr, "tensor survives by name");
    FUZZ_CHECK(other->dtype == tensor.dtype && other->shape == tensor.shape,
               "dtype and shape survive");
    FUZZ_CHECK(other->nbytes == tensor.nbytes &&
                   std::equal(tensor.data, tensor.data + tensor.nbytes, other->data),
               "bytes survive");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file =
      SafetensorsFile::FromBytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!file.ok()) {
    FUZZ_CHECK(!file.status().message().empty(), "every refusal says why");
    return 0;
  }
  CheckViews(**file);
  CheckRoundTrip(**file);
  return 0;
}
