// Module entry: registers the classes and a few process-wide helpers.
#include <napi.h>

#include <cstdlib>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <torch/cuda.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>

#include "binding/addon.h"
#include "binding/args.h"
#include "binding/engine_wrap.h"
#include "binding/handles.h"
#include "binding/marshal.h"
#include "binding/model_wrap.h"
#include "binding/tracker_wrap.h"
#include "binding/warnings.h"
#include "core/mask_ops.h"
#include "core/rle.h"

namespace sam3 {
namespace {

// rleEncode(mask: Uint8Array, height, width, order?: 'row' | 'column') -> string
// Synchronous: RLE of one mask is a linear scan; used by tests and the RLE benchmark.
Napi::Value RleEncodeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber()) {
    ThrowInvalid(env, "rleEncode(mask: Uint8Array, height: number, width: number, order?: 'row' | 'column')");
  }
  auto mask = TypedArrayArg<uint8_t>(info[0], "rleEncode: mask must be a Uint8Array");
  const int64_t h = info[1].As<Napi::Number>().Int64Value();
  const int64_t w = info[2].As<Napi::Number>().Int64Value();
  if (h <= 0 || w <= 0) ThrowInvalid(env, "rleEncode: height and width must be positive");
  if (static_cast<int64_t>(mask.ElementLength()) != h * w) ThrowInvalid(env, "rleEncode: mask must hold height*width bytes");
  bool row_major = true;
  if (info.Length() > 3 && info[3].IsString()) {
    const std::string order = info[3].As<Napi::String>();
    if (order == "column") row_major = false;
    else if (order != "row") ThrowInvalid(env, "rleEncode: order must be 'row' or 'column'");
  }
  if (!row_major) return AsciiString(env, RleEncode(mask.Data(), h, w));
  return AsciiString(env, RleEncodeRowMajor(mask.Data(), h, w));
}

// The shape arguments (batch, height, width) of the mask helpers, checked against `n` elements.
std::array<int64_t, 3> MaskShape(const Napi::CallbackInfo& info, size_t n, const char* usage) {
  Napi::Env env = info.Env();
  std::array<int64_t, 3> s{};
  for (int i = 0; i < 3; i++) s[i] = IntValue(info[i + 1], usage, 1, 1 << 16);
  if (static_cast<size_t>(s[0] * s[1] * s[2]) != n) ThrowInvalid(env, std::string(usage) + ": the array must hold batch*height*width elements");
  return s;
}

// componentAreas(mask: Uint8Array, batch, height, width) -> Int32Array: each foreground pixel's
// 8-connected component area (0 on the background). Synchronous; for tests of core/mask_ops.
Napi::Value ComponentAreasJs(const Napi::CallbackInfo& info) {
  const char* usage = "componentAreas(mask: Uint8Array, batch, height, width)";
  auto mask = TypedArrayArg<uint8_t>(info[0], usage);
  auto [b, h, w] = MaskShape(info, mask.ElementLength(), usage);
  torch::Tensor t = torch::from_blob(mask.Data(), {b, 1, h, w}, torch::kUInt8).clone();
  torch::Tensor areas = ComponentAreas(t).contiguous();
  auto out = Napi::Int32Array::New(info.Env(), static_cast<size_t>(b * h * w));
  std::memcpy(out.Data(), areas.data_ptr<int32_t>(), out.ByteLength());
  return out;
}

// fillHoles(logits: Float32Array, batch, height, width, maxArea) -> Float32Array: the masks after
// hole filling and sprinkle removal (fill_holes_in_mask_scores). Synchronous; for tests.
Napi::Value FillHolesJs(const Napi::CallbackInfo& info) {
  const char* usage = "fillHoles(logits: Float32Array, batch, height, width, maxArea)";
  auto logits = TypedArrayArg<float>(info[0], usage);
  auto [b, h, w] = MaskShape(info, logits.ElementLength(), usage);
  const int64_t max_area = IntValue(info[4], usage, 0);
  torch::Tensor t = torch::from_blob(logits.Data(), {b, 1, h, w}, torch::kFloat32).clone();
  torch::Tensor filled = FillHolesInMaskScores(t, max_area).contiguous();
  auto out = Napi::Float32Array::New(info.Env(), static_cast<size_t>(b * h * w));
  std::memcpy(out.Data(), filled.data_ptr<float>(), out.ByteLength());
  return out;
}

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("torchVersion", TORCH_VERSION);
  o.Set("cudaAvailable", torch::cuda::is_available());
  o.Set("cudaDeviceCount", static_cast<double>(torch::cuda::is_available() ? torch::cuda::device_count() : 0));
  o.Set("interopThreads", at::get_num_interop_threads());
  o.Set("defaultThreads", at::get_num_threads());
  o.Set("nnpackEnabled", at::globalContext().userEnabledNNPACK());
  return o;
}

// The mmap threshold this process runs with (bytes), or -1 where glibc's adaptive rule is left in place.
long g_mmap_threshold = -1;

// glibc serves a block from mmap (returned to the system on free) only above a threshold that it
// raises to the size of each mmapped block freed, up to 32 MiB. Tensors are freed all the time, so
// after the first few every frame's activations and every cached feature map come from the heap,
// and a heap of blocks of mixed lifetimes fragments: a 600-frame concept soak held 457 MiB free
// but unreturned next to 310 MiB in use. A fixed threshold keeps large blocks in mmap (and keeps
// glibc from raising it): 256 KiB held 42 MiB free at frame 300 where the default held 266 MiB,
// but every large tensor then costs page faults: +0.4 s of system time on a 3 s encode+segment
// round of the bench model (15-20% slower). So it is opt-in (SAM3_MALLOC_MMAP_THRESHOLD, bytes;
// 0, the default, leaves glibc's rule; glibc's own MALLOC_MMAP_THRESHOLD_, when set, wins), and
// trimNativeHeap below returns the free pages instead, now and then, off the JS thread.
void TuneHeap(Napi::Env env) {
#if defined(__GLIBC__)
  if (const char* glibc = std::getenv("MALLOC_MMAP_THRESHOLD_"); glibc != nullptr) {
    g_mmap_threshold = std::strtol(glibc, nullptr, 10);  // what glibc read at start-up
    return;
  }
  long bytes = 0;
  if (const char* v = std::getenv("SAM3_MALLOC_MMAP_THRESHOLD"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    const long long parsed = std::strtoll(v, &end, 10);
    constexpr long long kMax = 32LL * 1024 * 1024;  // glibc's largest mmap threshold on 64-bit
    if (*end != '\0' || parsed < 0 || parsed > kMax) {
      throw Napi::Error::New(env, std::string("SAM3_MALLOC_MMAP_THRESHOLD must be a byte count from 0 to ") +
                                      std::to_string(kMax) + " (0 leaves glibc's own rule), not '" + v + "'");
    }
    bytes = static_cast<long>(parsed);
  }
  if (bytes > 0 && mallopt(M_MMAP_THRESHOLD, static_cast<int>(bytes)) == 1) g_mmap_threshold = bytes;
#else
  (void)env;
#endif
}

// heapStats() -> {inUseBytes, freeBytes, mmapBytes, mmapThresholdBytes} | null: the C heap as glibc's allocator sees it
// (mallinfo2: bytes in use, bytes free but still held, bytes in mmapped chunks); null elsewhere.
// RSS well above inUseBytes + mmapBytes is fragmentation, not a leak.
Napi::Value HeapStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 m = mallinfo2();
  Napi::Object o = Napi::Object::New(env);
  o.Set("inUseBytes", static_cast<double>(m.uordblks + m.hblkhd));
  o.Set("freeBytes", static_cast<double>(m.fordblks));
  o.Set("mmapBytes", static_cast<double>(m.hblkhd));
  if (g_mmap_threshold >= 0) o.Set("mmapThresholdBytes", static_cast<double>(g_mmap_threshold));
  else o.Set("mmapThresholdBytes", env.Null());
  return o;
#else
  return env.Null();
#endif
}

// trimNativeHeap(minFreeBytes) -> Promise<{trimmed, freeBytes}>: on a libuv worker, when glibc holds
// at least minFreeBytes free, malloc_trim(0) hands every whole free page back to the system
// (madvise; the bytes stay free to glibc, no longer resident). Cheap next to inference when called
// every few seconds; resolves {trimmed: false, freeBytes: 0} off glibc.
class HeapTrimWorker : public Napi::AsyncWorker {
 public:
  HeapTrimWorker(Napi::Env env, double min_free)
      : Napi::AsyncWorker(env, "sam3:trimNativeHeap"), deferred_(Napi::Promise::Deferred::New(env)), min_free_(min_free) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    free_ = static_cast<double>(mallinfo2().fordblks);
    if (free_ >= min_free_) trimmed_ = malloc_trim(0) == 1;
#endif
  }
  void OnOK() override {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("trimmed", trimmed_);
    o.Set("freeBytes", free_);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  double min_free_;
  double free_ = 0;
  bool trimmed_ = false;
};

Napi::Value TrimNativeHeap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double min_free = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  auto* worker = new HeapTrimWorker(env, min_free);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  TuneHeap(env);  // first, before libtorch allocates anything large
  // The profiling graph executor profiles and re-specialises a traced graph for every new input
  // shape (batch size, prompt count, box count), so the first call at each shape is slow, and a
  // server sees new shapes all the time. Traced SAM 3 is dominated by large ops that gain little from
  // TorchScript's fusers, so run the graphs with the simple executor, as traced, unless
  // SAM3_JIT_OPTIMIZE=1 asks for the profiling executor and its optimisations.
  const char* opt = std::getenv("SAM3_JIT_OPTIMIZE");
  const bool optimise = opt != nullptr && std::strcmp(opt, "1") == 0;
  torch::jit::getProfilingMode() = optimise;
  torch::jit::getExecutorMode() = optimise;
  torch::jit::setGraphExecutorOptimize(optimise);
  // NNPACK: every CPU convolution asks whether it is available before checking the batch size
  // (it is used only from batch 16 up), and where it cannot initialise (unsupported hardware)
  // libtorch prints "Could not initialize NNPACK!" to stderr on each of those calls, several times
  // an image. Our batches are smaller; the default CPU convolution serves them.
  at::globalContext().setUserEnabledNNPACK(false);
  InstallWarningRelay();

  auto* data = new AddonData();
  Napi::Function engine = Engine::Init(env);
  Napi::Function model = Model::Init(env);
  Napi::Function features = ImageFeatures::Init(env);
  Napi::Function text = TextEmbedding::Init(env);
  Napi::Function tracker = Tracker::Init(env);
  Napi::Function video = VideoHandle::Init(env);
  Napi::Function logits = MaskLogits::Init(env);
  data->tracker_ctor = Napi::Persistent(tracker);
  data->video_ctor = Napi::Persistent(video);
  data->logits_ctor = Napi::Persistent(logits);
  data->engine_ctor = Napi::Persistent(engine);
  data->model_ctor = Napi::Persistent(model);
  data->features_ctor = Napi::Persistent(features);
  data->text_ctor = Napi::Persistent(text);
  env.SetInstanceData<AddonData>(data);

  exports.Set("Engine", engine);
  exports.Set("Model", model);
  exports.Set("ImageFeatures", features);
  exports.Set("TextEmbedding", text);
  exports.Set("Tracker", tracker);
  exports.Set("VideoHandle", video);
  exports.Set("MaskLogits", logits);
  exports.Set("rleEncode", Napi::Function::New(env, RleEncodeJs, "rleEncode"));
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo, "runtimeInfo"));
  exports.Set("heapStats", Napi::Function::New(env, HeapStats, "heapStats"));
  exports.Set("setWarningListener", Napi::Function::New(env, SetWarningListener, "setWarningListener"));
  exports.Set("trimNativeHeap", Napi::Function::New(env, TrimNativeHeap, "trimNativeHeap"));
  exports.Set("componentAreas", Napi::Function::New(env, ComponentAreasJs, "componentAreas"));
  exports.Set("fillHoles", Napi::Function::New(env, FillHolesJs, "fillHoles"));
  return exports;
}

}  // namespace
}  // namespace sam3

static Napi::Object InitSam3(Napi::Env env, Napi::Object exports) { return sam3::Init(env, exports); }
NODE_API_MODULE(sam3, InitSam3)
