#include "rle.h"

namespace sam3 {

std::vector<uint32_t> RleCounts(const uint8_t* colmajor, int64_t h, int64_t w) {
  std::vector<uint32_t> counts;
  const int64_t n = h * w;
  uint8_t current = 0;  // runs alternate starting with background, so the first run may be 0 long
  uint32_t run = 0;
  for (int64_t i = 0; i < n; i++) {
    const uint8_t v = colmajor[i] ? 1 : 0;
    if (v != current) {
      counts.push_back(run);
      run = 0;
      current = v;
    }
    run++;
  }
  counts.push_back(run);
  return counts;
}

std::string RleCountsToString(const std::vector<uint32_t>& counts) {
  std::string s;
  s.reserve(counts.size() * 2 + 8);
  for (size_t i = 0; i < counts.size(); i++) {
    int64_t x = static_cast<int64_t>(counts[i]);
    if (i > 2) x -= static_cast<int64_t>(counts[i - 2]);
    bool more = true;
    while (more) {
      char c = static_cast<char>(x & 0x1f);
      x >>= 5;  // arithmetic shift: negative deltas terminate at -1
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s.push_back(static_cast<char>(c + 48));
    }
  }
  return s;
}

std::string RleEncode(const uint8_t* colmajor, int64_t h, int64_t w) {
  return RleCountsToString(RleCounts(colmajor, h, w));
}

}  // namespace sam3
