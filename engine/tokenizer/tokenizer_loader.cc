// Tokenizer::Load: SentencePiece lives in a plugin loaded with its own symbol
// scope.
//
// Why: Debian's libsentencepiece bundles its own protobuf-lite (3.14) and
// exports those symbols, while LibTorch (and later gRPC) loads the system
// libprotobuf (3.21). Linked into one program, whichever library comes first
// provides every protobuf symbol to both, and the other crashes in its static
// initializers. The plugin (libquantmt_spm.so, which links libsentencepiece)
// is opened with RTLD_LOCAL | RTLD_DEEPBIND: sentencepiece binds to its own
// protobuf copy and nothing of it leaks into the global scope.
#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "quantmt/engine/tokenizer.h"

// Whether a sanitizer runtime is linked in: GCC defines __SANITIZE_*__,
// clang answers through __has_feature.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define QUANTMT_SANITIZER_RUNTIME 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define QUANTMT_SANITIZER_RUNTIME 1
#endif
#endif
#ifndef QUANTMT_SANITIZER_RUNTIME
#define QUANTMT_SANITIZER_RUNTIME 0
#endif

namespace quantmt {
namespace {

using LoadFunction = Tokenizer* (*)(const std::string*, std::string*, TokenizerErrorCode*);

constexpr char kPluginName[] = "libquantmt_spm.so";

std::string ExecutableDirectory() {
  std::vector<char> buffer(4096);
  const ssize_t length = ::readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  if (length <= 0) return "";
  std::string path(buffer.data(), static_cast<size_t>(length));
  return path.substr(0, path.find_last_of('/'));
}

// Where the plugin may be, in order: $QUANTMT_SPM_PLUGIN, beside the
// program, ../lib/quantmt from the program, the build tree, the install tree.
std::vector<std::string> Candidates() {
  std::vector<std::string> paths;
  if (const char* env = std::getenv("QUANTMT_SPM_PLUGIN"); env != nullptr && *env) {
    paths.push_back(env);
  }
  const std::string exe_dir = ExecutableDirectory();
  if (!exe_dir.empty()) {
    paths.push_back(exe_dir + "/" + kPluginName);
    paths.push_back(exe_dir + "/../lib/quantmt/" + kPluginName);
  }
  paths.push_back(QUANTMT_SPM_PLUGIN_BUILD_PATH);
  paths.push_back(QUANTMT_SPM_PLUGIN_INSTALL_PATH);
  return paths;
}

// True when a system libprotobuf is already in the process (Debian's
// LibTorch brings one); only then does SentencePiece need its own scope.
bool ProtobufLoaded() {
  bool found = false;
  ::dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) {
        if (info->dlpi_name != nullptr && std::strstr(info->dlpi_name, "/libprotobuf.so")) {
          *static_cast<bool*>(data) = true;
        }
        return 0;
      },
      &found);
  return found;
}

int OpenFlags() {
  // RTLD_DEEPBIND also reorders libstdc++'s template instances for the
  // plugin, which breaks where the program's libstdc++ is newer than the
  // one SentencePiece was built with (the pip LibTorch machine): use it only
  // where it is needed.
  if (!ProtobufLoaded()) return RTLD_NOW | RTLD_LOCAL;
#if QUANTMT_SANITIZER_RUNTIME
  // Sanitizer runtimes refuse RTLD_DEEPBIND. Sanitizer builds put a copy of
  // libsentencepiece marked DF_SYMBOLIC beside the plugin instead (see
  // engine/CMakeLists.txt), which binds its protobuf to itself all the same.
  return RTLD_NOW | RTLD_LOCAL;
#else
  return RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif
}

struct Plugin {
  LoadFunction load = nullptr;
  std::string error;
};

const Plugin& GetPlugin() {
  static Plugin* plugin = [] {
    auto* result = new Plugin;
    std::string tried;
    for (const std::string& path : Candidates()) {
      if (::access(path.c_str(), R_OK) != 0) {
        tried += " " + path;
        continue;
      }
      void* handle = ::dlopen(path.c_str(), OpenFlags());
      if (handle == nullptr) {
        result->error = std::string("cannot load the SentencePiece plugin: ") + ::dlerror();
        return result;
      }
      result->load = reinterpret_cast<LoadFunction>(::dlsym(handle, "quantmt_spm_load"));
      if (result->load == nullptr) result->error = path + ": no quantmt_spm_load symbol";
      return result;
    }
    result->error = std::string("cannot find the SentencePiece plugin ") + kPluginName +
                    " (set QUANTMT_SPM_PLUGIN); tried:" + tried;
    return result;
  }();
  return *plugin;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::Load(const std::string& model_path, std::string* error,
                                           TokenizerErrorCode* code) {
  const Plugin& plugin = GetPlugin();
  if (plugin.load == nullptr) {
    if (error != nullptr) *error = plugin.error;
    if (code != nullptr) *code = TokenizerErrorCode::kInternal;
    return nullptr;
  }
  return std::unique_ptr<Tokenizer>(plugin.load(&model_path, error, code));
}

}  // namespace quantmt
