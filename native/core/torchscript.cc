#include "core/torchscript.h"

#include "core/errors.h"

namespace sam3 {

torch::jit::Module LoadPiece(const std::string& path, const torch::Device& device, const std::string& what) {
  try {
    torch::jit::Module m = torch::jit::load(path, device);
    m.eval();
    return m;
  } catch (...) {
    throw CurrentError(code::kModelLoad, "cannot load the " + what + " from " + path);
  }
}

void LoadPieces(const torch::Device& device, std::initializer_list<PieceSpec> pieces) {
  for (const PieceSpec& p : pieces) p.module = LoadPiece(p.path, device, p.what);
}

std::vector<torch::Tensor> UnpackTuple(const torch::jit::IValue& out, size_t expected, const char* what) {
  std::vector<torch::Tensor> tensors;
  if (out.isTuple()) {
    for (const auto& e : out.toTupleRef().elements()) tensors.push_back(e.toTensor());
  } else if (out.isTensor()) {
    tensors.push_back(out.toTensor());
  }
  if (tensors.size() != expected) {
    throw NativeError(code::kModelLoad, std::string(what) + " returned " + std::to_string(tensors.size()) +
                                            " outputs, expected " + std::to_string(expected) +
                                            ": the bundle does not match this version of the server");
  }
  return tensors;
}

}  // namespace sam3
