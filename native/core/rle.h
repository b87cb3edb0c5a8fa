// COCO run-length encoding, byte for byte what pycocotools' mask.encode + rleToString produce.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace sam3 {

// `colmajor` holds h*w bytes in column-major (Fortran) order, non-zero meaning foreground.
std::vector<uint32_t> RleCounts(const uint8_t* colmajor, int64_t h, int64_t w);
// The same counts computed straight from row-major h x w bytes (no transpose).
std::vector<uint32_t> RleCountsRowMajor(const uint8_t* rowmajor, int64_t h, int64_t w);
// pycocotools' compressed string form of the counts (LEB128-like, 6 bits per char, delta from i-2).
std::string RleCountsToString(const std::vector<uint32_t>& counts);
std::string RleEncode(const uint8_t* colmajor, int64_t h, int64_t w);
// The string straight from row-major h x w bytes: RleCountsToString(RleCountsRowMajor(...)).
std::string RleEncodeRowMajor(const uint8_t* rowmajor, int64_t h, int64_t w);

}  // namespace sam3
