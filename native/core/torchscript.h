// Loading and calling the traced (TorchScript) pieces of a model bundle.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

namespace sam3 {

// torch::jit::load onto `device`, in eval mode; failure throws kModelLoad naming `what` and the path.
torch::jit::Module LoadPiece(const std::string& path, const torch::Device& device, const std::string& what);

// One piece to load: where it goes, where it is, what it is (for messages).
struct PieceSpec {
  torch::jit::Module& module;
  const std::string& path;
  std::string what;
};

// LoadPiece for each, in order.
void LoadPieces(const torch::Device& device, std::initializer_list<PieceSpec> pieces);

// The tensors of a piece's output (a tuple, or one tensor); kModelLoad when there are not
// `expected` of them (a bundle exported by another version of the exporter).
std::vector<torch::Tensor> UnpackTuple(const torch::jit::IValue& out, size_t expected, const char* what);

// m.forward(inputs), unpacked.
inline std::vector<torch::Tensor> RunTuple(torch::jit::Module& m, std::vector<torch::jit::IValue> inputs, size_t expected,
                                           const char* what) {
  return UnpackTuple(m.forward(std::move(inputs)), expected, what);
}

inline int64_t TensorBytes(const torch::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

}  // namespace sam3
