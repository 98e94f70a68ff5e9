#include "checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace quantmt::checkpoint {
namespace {

using json = nlohmann::json;

// The safetensors reference implementation refuses headers above 100 MB; a
// real header (a few hundred tensors) is a few tens of KiB. The cap bounds
// the memory a hostile file can make the JSON parser allocate.
constexpr uint64_t kMaxHeaderBytes = 100 * 1024 * 1024;

// A valid header nests at most three levels: root object, tensor entry,
// shape/data_offsets array. Anything deeper is refused while parsing so
// that "[[[[..." cannot build a huge tree before validation sees it.
constexpr int kMaxJsonDepth = 3;

constexpr char kMetadataKey[] = "__metadata__";

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kF64, "F64", 8},   {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

std::string SupportedDTypeList() {
  std::vector<std::string> names;
  for (const DTypeInfo& info : kDTypes) names.push_back(info.name);
  return absl::StrJoin(names, " ");
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Product of the dimensions; false on a negative dimension or int64 overflow.
bool CheckedNumElements(const std::vector<int64_t>& shape, int64_t* numel) {
  int64_t product = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(product, dim, &product)) return false;
  }
  *numel = product;
  return true;
}

// numel * dtype size; false if it does not fit in int64 (and hence size_t).
bool CheckedByteSize(int64_t numel, DType dtype, uint64_t* nbytes) {
  int64_t bytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<int64_t>(DTypeSize(dtype)), &bytes)) return false;
  *nbytes = static_cast<uint64_t>(bytes);
  return true;
}

absl::Status HeaderError(absl::StatusCode code, const std::string& path, const std::string& what) {
  return absl::Status(code, absl::StrCat(path, ": header: ", what));
}

absl::Status TensorError(absl::StatusCode code, const std::string& path, const std::string& name,
                         const std::string& what) {
  return absl::Status(code, absl::StrCat(path, ": tensor '", name, "': ", what));
}

uint64_t ReadLittleEndian64(const uint8_t* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

// Closes a file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  // Closes now and reports the error close() may carry (NFS, disk full).
  int Close() {
    int result = ::close(fd_);
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

// ---------------------------------------------------------------- reading

// Parses the header JSON without exceptions. Nesting deeper than a valid
// header needs and repeated tensor names (which nlohmann would silently
// collapse to the last one) are reported instead of being accepted.
absl::StatusOr<json> ParseHeaderJson(const std::string& path, const char* begin, const char* end) {
  bool too_deep = false;
  std::string duplicate;
  std::set<std::string> keys;
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      too_deep = true;
      return false;
    }
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!keys.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json header = json::parse(begin, end, callback, /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    return HeaderError(absl::StatusCode::kDataLoss, path, "not valid JSON");
  }
  if (too_deep) {
    return HeaderError(absl::StatusCode::kDataLoss, path,
                       "JSON nested deeper than a safetensors header can be");
  }
  if (!header.is_object()) {
    return HeaderError(absl::StatusCode::kDataLoss, path,
                       absl::StrCat("expected a JSON object, got ", header.type_name()));
  }
  if (!duplicate.empty()) {
    return TensorError(absl::StatusCode::kDataLoss, path, duplicate, "appears twice in the header");
  }
  return header;
}

absl::Status ParseMetadata(const std::string& path, const json& value,
                           std::map<std::string, std::string>* metadata) {
  if (!value.is_object()) {
    return HeaderError(
        absl::StatusCode::kDataLoss, path,
        absl::StrCat("__metadata__ must be an object of strings, got ", value.type_name()));
  }
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      return HeaderError(absl::StatusCode::kDataLoss, path,
                         absl::StrCat("__metadata__ value of '", key, "' must be a string, got ",
                                      item.type_name()));
    }
    (*metadata)[key] = item.get<std::string>();
  }
  return absl::OkStatus();
}

// A header entry as validated, before it is sorted into file order.
struct Entry {
  TensorView view;
  uint64_t begin = 0;
  uint64_t end = 0;
};

absl::StatusOr<DType> ParseEntryDType(const std::string& path, const std::string& name,
                                      const json& entry) {
  auto it = entry.find("dtype");
  if (it == entry.end() || !it->is_string()) {
    return TensorError(absl::StatusCode::kDataLoss, path, name, "missing string field 'dtype'");
  }
  absl::StatusOr<DType> dtype = ParseDType(it->get<std::string>());
  if (!dtype.ok()) {
    return TensorError(absl::StatusCode::kInvalidArgument, path, name,
                       std::string(dtype.status().message()));
  }
  return dtype;
}

absl::StatusOr<std::vector<int64_t>> ParseEntryShape(const std::string& path,
                                                     const std::string& name, const json& entry) {
  auto it = entry.find("shape");
  if (it == entry.end() || !it->is_array()) {
    return TensorError(absl::StatusCode::kDataLoss, path, name, "missing array field 'shape'");
  }
  std::vector<int64_t> shape;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& dim = (*it)[i];
    if (dim.is_number_unsigned() &&
        dim.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      shape.push_back(static_cast<int64_t>(dim.get<uint64_t>()));
      continue;
    }
    std::string what =
        dim.is_number_integer()
            ? absl::StrCat("shape[", i, "] is ", dim.dump(), ", dimensions must be non-negative")
            : absl::StrCat("shape[", i, "] is ", dim.dump(), ", expected a non-negative integer");
    return TensorError(absl::StatusCode::kDataLoss, path, name, what);
  }
  return shape;
}

absl::Status ParseEntryOffsets(const std::string& path, const std::string& name, const json& entry,
                               uint64_t buffer_size, uint64_t* begin, uint64_t* end) {
  auto it = entry.find("data_offsets");
  if (it == entry.end() || !it->is_array() || it->size() != 2 || !(*it)[0].is_number_unsigned() ||
      !(*it)[1].is_number_unsigned()) {
    return TensorError(absl::StatusCode::kDataLoss, path, name,
                       "'data_offsets' must be an array of two non-negative integers");
  }
  *begin = (*it)[0].get<uint64_t>();
  *end = (*it)[1].get<uint64_t>();
  if (*end < *begin) {
    return TensorError(
        absl::StatusCode::kDataLoss, path, name,
        absl::StrCat("data_offsets [", *begin, ", ", *end, "] end before they begin"));
  }
  if (*end > buffer_size) {
    return TensorError(absl::StatusCode::kDataLoss, path, name,
                       absl::StrCat("data_offsets [", *begin, ", ", *end,
                                    "] run past the end of the data buffer (", buffer_size,
                                    " bytes; file truncated?)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Entry> ParseEntry(const std::string& path, const std::string& name,
                                 const json& value, const uint8_t* buffer, uint64_t buffer_size) {
  if (!value.is_object()) {
    return TensorError(absl::StatusCode::kDataLoss, path, name,
                       absl::StrCat("entry must be an object, got ", value.type_name()));
  }
  Entry entry;
  entry.view.name = name;
  ASSIGN_OR_RETURN(entry.view.dtype, ParseEntryDType(path, name, value));
  ASSIGN_OR_RETURN(entry.view.shape, ParseEntryShape(path, name, value));
  RETURN_IF_ERROR(ParseEntryOffsets(path, name, value, buffer_size, &entry.begin, &entry.end));

  int64_t numel = 0;
  uint64_t expected_bytes = 0;
  if (!CheckedNumElements(entry.view.shape, &numel) ||
      !CheckedByteSize(numel, entry.view.dtype, &expected_bytes)) {
    return TensorError(absl::StatusCode::kDataLoss, path, name,
                       absl::StrCat("shape ", ShapeString(entry.view.shape), " is too large"));
  }
  const uint64_t actual_bytes = entry.end - entry.begin;
  if (actual_bytes != expected_bytes) {
    return TensorError(
        absl::StatusCode::kDataLoss, path, name,
        absl::StrCat("data_offsets [", entry.begin, ", ", entry.end, "] hold ", actual_bytes,
                     " bytes but shape ", ShapeString(entry.view.shape), " of ",
                     DTypeName(entry.view.dtype), " needs ", expected_bytes));
  }
  entry.view.data = buffer + entry.begin;
  entry.view.nbytes = static_cast<size_t>(actual_bytes);
  return entry;
}

// Sorts into file order and refuses tensors that share bytes: a writer bug
// or a crafted file, and either way one tensor's weights would alias another.
absl::Status SortAndCheckOverlap(const std::string& path, std::vector<Entry>* entries) {
  std::sort(entries->begin(), entries->end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.view.name) < std::tie(b.begin, b.end, b.view.name);
  });
  const Entry* furthest = nullptr;  // the non-empty tensor reaching furthest so far
  for (const Entry& entry : *entries) {
    if (entry.begin == entry.end) continue;  // an empty range shares no bytes
    if (furthest != nullptr && entry.begin < furthest->end) {
      return TensorError(
          absl::StatusCode::kDataLoss, path, entry.view.name,
          absl::StrCat("data_offsets [", entry.begin, ", ", entry.end, "] overlap tensor '",
                       furthest->view.name, "' [", furthest->begin, ", ", furthest->end, "]"));
    }
    if (furthest == nullptr || entry.end > furthest->end) furthest = &entry;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- writing

absl::Status CheckTensorsToWrite(const std::string& path,
                                 const std::vector<TensorToWrite>& tensors) {
  std::set<std::string> names;
  for (const TensorToWrite& tensor : tensors) {
    if (tensor.name.empty() || tensor.name == kMetadataKey) {
      return TensorError(absl::StatusCode::kInvalidArgument, path, tensor.name,
                         "name is empty or reserved");
    }
    if (!names.insert(tensor.name).second) {
      return TensorError(absl::StatusCode::kInvalidArgument, path, tensor.name, "name given twice");
    }
    int64_t numel = 0;
    uint64_t expected = 0;
    if (!CheckedNumElements(tensor.shape, &numel) ||
        !CheckedByteSize(numel, tensor.dtype, &expected)) {
      return TensorError(absl::StatusCode::kInvalidArgument, path, tensor.name,
                         absl::StrCat("shape ", ShapeString(tensor.shape),
                                      " has a negative dimension or is too large"));
    }
    if (tensor.nbytes != expected) {
      return TensorError(
          absl::StatusCode::kInvalidArgument, path, tensor.name,
          absl::StrCat("nbytes is ", tensor.nbytes, " but shape ", ShapeString(tensor.shape),
                       " of ", DTypeName(tensor.dtype), " needs ", expected));
    }
    if (tensor.data == nullptr && tensor.nbytes > 0) {
      return TensorError(absl::StatusCode::kInvalidArgument, path, tensor.name, "data is null");
    }
  }
  return absl::OkStatus();
}

// The 8-byte length followed by the JSON header, padded with spaces so that
// the data buffer starts at a multiple of 8.
absl::StatusOr<std::string> BuildHeader(const std::string& path,
                                        const std::vector<TensorToWrite>& tensors,
                                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    header[tensor.name] = {{"dtype", DTypeName(tensor.dtype)},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + tensor.nbytes}}};
    offset += tensor.nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception&) {
    // dump() refuses strings that are not valid UTF-8, as JSON requires.
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header: a tensor name or metadata string is not valid UTF-8"));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string result(8, '\0');
  for (int i = 0; i < 8; ++i) result[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  return result + text;
}

// write() until done: it may write less than asked (signals, pipes, >2 GiB).
absl::Status WriteAll(int fd, const std::string& path, const void* data, size_t size) {
  const char* bytes = static_cast<const char*>(data);
  size_t written = 0;
  while (written < size) {
    ssize_t n = ::write(fd, bytes + written, size - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : EIO;
      return absl::ErrnoToStatus(error, absl::StrCat(path, ": write failed"));
    }
    written += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status WriteContents(int fd, const std::string& tmp_path, const std::string& header,
                           const std::vector<TensorToWrite>& tensors) {
  RETURN_IF_ERROR(WriteAll(fd, tmp_path, header.data(), header.size()));
  for (const TensorToWrite& tensor : tensors) {
    RETURN_IF_ERROR(WriteAll(fd, tmp_path, tensor.data, tensor.nbytes));
  }
  // Flush before the rename so that a crash leaves the old file or the
  // complete new one, never a renamed but empty file.
  if (::fsync(fd) != 0) return absl::ErrnoToStatus(errno, absl::StrCat(tmp_path, ": fsync failed"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DType> ParseDType(const std::string& name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype '", name, "' (supported: ", SupportedDTypeList(), ")"));
}

const char* DTypeName(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info.name;
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info.size;
  }
  return 0;
}

int64_t TensorView::NumElements() const {
  int64_t numel = 0;
  return CheckedNumElements(shape, &numel) ? numel : -1;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang; fstat then refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  FdCloser closer(fd);
  struct stat info;
  if (::fstat(fd, &info) != 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": stat"));
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }

  // Read, not mapped: a mapping of a file that someone truncates while we
  // copy tensors out of it raises SIGBUS, and a server must survive its
  // model directory being rewritten under it.
  std::string bytes(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": read failed"));
    if (n == 0) {
      return absl::DataLossError(absl::StrCat(path, ": file shrank from ", bytes.size(), " to ",
                                              done, " bytes while being read (rewritten?)"));
    }
    done += static_cast<size_t>(n);
  }
  return FromBytes(std::move(bytes), path);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::string bytes, const std::string& origin) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = origin;
  file->owned_ = std::move(bytes);
  file->base_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->size_ = file->owned_.size();
  RETURN_IF_ERROR(file->Parse());
  return file;
}

SafetensorsFile::~SafetensorsFile() = default;

const TensorView* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::Status SafetensorsFile::Parse() {
  if (size_ == 0) {
    return HeaderError(absl::StatusCode::kDataLoss, path_,
                       "file is empty; a safetensors file starts with an 8-byte header length");
  }
  if (size_ < 8) {
    return HeaderError(
        absl::StatusCode::kDataLoss, path_,
        absl::StrCat("file is ", size_, " bytes, shorter than the 8-byte header length"));
  }
  const uint64_t header_size = ReadLittleEndian64(base_);
  const uint64_t after_length = size_ - 8;
  if (header_size > after_length) {
    return HeaderError(
        absl::StatusCode::kDataLoss, path_,
        absl::StrCat("header length ", header_size, " runs past the end of the file (", size_,
                     " bytes; file truncated?)"));
  }
  if (header_size > kMaxHeaderBytes) {
    return HeaderError(absl::StatusCode::kInvalidArgument, path_,
                       absl::StrCat("header length ", header_size, " exceeds the limit of ",
                                    kMaxHeaderBytes, " bytes"));
  }
  const char* header_begin = reinterpret_cast<const char*>(base_ + 8);
  ASSIGN_OR_RETURN(json header, ParseHeaderJson(path_, header_begin, header_begin + header_size));

  const uint8_t* buffer = base_ + 8 + header_size;
  const uint64_t buffer_size = after_length - header_size;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey) {
      RETURN_IF_ERROR(ParseMetadata(path_, value, &metadata_));
      continue;
    }
    ASSIGN_OR_RETURN(Entry entry, ParseEntry(path_, name, value, buffer, buffer_size));
    entries.push_back(std::move(entry));
  }
  RETURN_IF_ERROR(SortAndCheckOverlap(path_, &entries));
  for (Entry& entry : entries) {
    index_[entry.view.name] = tensors_.size();
    tensors_.push_back(std::move(entry.view));
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  RETURN_IF_ERROR(CheckTensorsToWrite(path, tensors));
  ASSIGN_OR_RETURN(std::string header, BuildHeader(path, tensors, metadata));

  const std::string tmp_path = path + ".tmp";
  const int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(tmp_path, ": cannot create"));
  FdCloser closer(fd);
  absl::Status status = WriteContents(fd, tmp_path, header, tensors);
  if (closer.Close() != 0 && status.ok()) {
    status = absl::ErrnoToStatus(errno, absl::StrCat(tmp_path, ": close failed"));
  }
  if (status.ok() && ::rename(tmp_path.c_str(), path.c_str()) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("cannot rename ", tmp_path, " to ", path));
  }
  if (!status.ok()) ::unlink(tmp_path.c_str());
  return status;
}

}  // namespace quantmt::checkpoint
