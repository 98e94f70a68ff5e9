#include "kernels/dnnl_matmul.h"

#include <omp.h>

#include <cstring>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "quantmt/engine/mutex.h"

namespace quantmt::kernels {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DataType = memory::data_type;

// Primitives are built per row count m (decoding shrinks and grows the
// batch); the weight layout is chosen once, for this m, and reused for all.
constexpr int64_t kLayoutRows = 64;

// Products smaller than this many multiply-adds run on one thread: waking a
// passive OpenMP worker costs more than it saves (at 512x512, m=1: 3 us on
// one thread vs 24 us on two, measured on a busy 2-vCPU machine).
constexpr int64_t kParallelWork = int64_t{1} << 22;

// `bytes` of `buffer`, 64-byte aligned (the buffer grows, never shrinks).
void* Aligned(std::vector<uint8_t>& buffer, size_t bytes) {
  if (buffer.size() < bytes + 64) buffer.resize(bytes + 64);
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + (64 - address % 64) % 64;
}

dnnl::engine& CpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

class DnnlMatmulImpl : public DnnlMatmul {
 public:
  DnnlMatmulImpl(Kind kind, int64_t n, int64_t k, bool has_bias)
      : kind_(kind), n_(n), k_(k), has_bias_(has_bias) {}

  absl::Status Init(const void* weight, const float* bias) {
    const DataType weight_type = kind_ == Kind::kInt8 ? DataType::s8 : DataType::f32;
    // W [n, k] row-major is B = W^T [k, n] in column-major ("ba") order.
    memory::desc plain({k_, n_}, weight_type, Tag::ba);
    memory::desc any({k_, n_}, weight_type, Tag::any);
    auto layout = dnnl::matmul::primitive_desc(Describe(kLayoutRows, any), CpuEngine());
    packed_desc_ = layout.weights_desc();
    packed_ = memory(packed_desc_, CpuEngine());
    memory source(plain, CpuEngine(), const_cast<void*>(weight));
    dnnl::stream stream(CpuEngine());
    dnnl::reorder(source, packed_).execute(stream, source, packed_);
    stream.wait();
    if (bias != nullptr) {
      bias_ = memory({{1, n_}, DataType::f32, Tag::ab}, CpuEngine());
      std::memcpy(bias_.get_data_handle(), bias, sizeof(float) * n_);
    }
    return absl::OkStatus();
  }

  void Run(const void* a, int64_t m, void* c, int threads) override {
    if (m <= 0) return;
    // oneDNN sizes its parallel loops from the OpenMP thread count when a
    // primitive is created, so primitives are cached per (m, threads).
    const int caller_threads = omp_get_max_threads();
    if (threads <= 0) threads = caller_threads;
    if (m * n_ * k_ < kParallelWork) threads = 1;
    if (threads != caller_threads) omp_set_num_threads(threads);
    const Entry& entry = PrimitiveFor(m, threads);
    memory source(entry.source, CpuEngine(), const_cast<void*>(a));
    memory destination(entry.destination, CpuEngine(), c);
    // Each calling thread brings its own scratchpad: with the library's
    // (Debian's oneDNN 2.6 is not built for concurrent execution), replicas
    // sharing one layer ran concurrently into wrong results, and a lock per
    // layer made them take turns.
    thread_local std::vector<uint8_t> scratch;
    memory scratchpad(entry.scratchpad, CpuEngine(), Aligned(scratch, entry.scratchpad.get_size()));
    thread_local dnnl::stream stream(CpuEngine());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, source},
                                            {DNNL_ARG_WEIGHTS, packed_},
                                            {DNNL_ARG_DST, destination},
                                            {DNNL_ARG_SCRATCHPAD, scratchpad}};
    if (bias_) args.emplace(DNNL_ARG_BIAS, bias_);
    entry.primitive.execute(stream, args);
    stream.wait();
    if (threads != caller_threads) omp_set_num_threads(caller_threads);
  }

  int64_t n() const override { return n_; }
  int64_t k() const override { return k_; }

 private:
  struct Entry {
    memory::desc source, destination, scratchpad;
    dnnl::matmul primitive;
  };

  dnnl::matmul::desc Describe(int64_t m, const memory::desc& weights) const {
    const bool int8 = kind_ == Kind::kInt8;
    memory::desc source({m, k_}, int8 ? DataType::s8 : DataType::f32, Tag::ab);
    memory::desc destination({m, n_}, int8 ? DataType::s32 : DataType::f32, Tag::ab);
    if (has_bias_) {
      return dnnl::matmul::desc(source, weights, memory::desc({1, n_}, DataType::f32, Tag::ab),
                                destination);
    }
    return dnnl::matmul::desc(source, weights, destination);
  }

  const Entry& PrimitiveFor(int64_t m, int threads) {
    MutexLock lock(&mutex_);
    auto found = primitives_.find({m, threads});
    if (found != primitives_.end()) return found->second;
    dnnl::primitive_attr attributes;
    attributes.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::matmul::primitive_desc pd(Describe(m, packed_desc_), attributes, CpuEngine());
    Entry entry{pd.src_desc(), pd.dst_desc(), pd.scratchpad_desc(), dnnl::matmul(pd)};
    return primitives_.emplace(std::make_pair(m, threads), std::move(entry)).first->second;
  }

  Kind kind_;
  int64_t n_, k_;
  bool has_bias_;
  memory::desc packed_desc_;
  memory packed_;
  memory bias_;
  Mutex mutex_;
  // Node-based: references stay valid while other threads add entries.
  std::map<std::pair<int64_t, int>, Entry> primitives_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace

bool HaveDnnl() { return true; }

absl::StatusOr<std::unique_ptr<DnnlMatmul>> DnnlMatmul::Create(Kind kind, const void* weight,
                                                               const float* bias, int64_t n,
                                                               int64_t k) {
  if (n <= 0 || k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("matmul weight must be non-empty, got [", n, ", ", k, "]"));
  }
  if (bias != nullptr && kind != Kind::kFloat32) {
    return absl::InvalidArgumentError("an int8 matmul takes no bias (apply it after scaling)");
  }
  auto matmul = std::make_unique<DnnlMatmulImpl>(kind, n, k, bias != nullptr);
  try {
    RETURN_IF_ERROR(matmul->Init(weight, bias));
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN matmul [", n, ", ", k, "]: ", e.what()));
  }
  return std::unique_ptr<DnnlMatmul>(std::move(matmul));
}

}  // namespace quantmt::kernels
