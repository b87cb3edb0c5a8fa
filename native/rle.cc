#include "rle.h"

#include <cstring>

namespace sam3 {
namespace {

constexpr uint64_t kOnes = 0x0101010101010101ULL;

// Index of the first byte at or after `i` whose value differs from `current` (0 or 1), or n.
// Masks are mostly long runs, so whole 8-byte words are skipped while they hold only `current`.
inline int64_t NextChange(const uint8_t* p, int64_t i, int64_t n, uint8_t current) {
  const uint64_t same = current ? kOnes : 0;
  while (i + 8 <= n) {
    uint64_t word;
    std::memcpy(&word, p + i, 8);
    if (word != same) break;
    i += 8;
  }
  while (i < n && (p[i] != 0) == (current != 0)) i++;
  return i;
}

}  // namespace

std::vector<uint32_t> RleCounts(const uint8_t* colmajor, int64_t h, int64_t w) {
  std::vector<uint32_t> counts;
  const int64_t n = h * w;
  uint8_t current = 0;  // runs alternate starting with background, so the first run may be 0 long
  int64_t start = 0;
  while (start < n) {
    const int64_t end = NextChange(colmajor, start, n, current);
    counts.push_back(static_cast<uint32_t>(end - start));
    start = end;
    current ^= 1;
  }
  if (counts.empty()) counts.push_back(0);
  return counts;
}

std::vector<uint32_t> RleCountsRowMajor(const uint8_t* m, int64_t h, int64_t w) {
  // COCO runs go down the columns. A run boundary in column order is either a vertical change
  // between rows y-1 and y of one column, or a change from the bottom of column x-1 to the top of
  // column x. Vertical changes are found by comparing whole rows 8 bytes at a time (contiguous and
  // mostly equal), then bucketed by column (counting sort; rows are visited in order, so each
  // column's changes stay sorted).
  const int64_t n = h * w;
  std::vector<uint32_t> xs, ys;
  auto on = [](uint8_t v) { return v != 0; };
  if (on(m[0])) { xs.push_back(0); ys.push_back(0); }  // runs start with background
  for (int64_t x = 1; x < w; x++) {
    if (on(m[x]) != on(m[(h - 1) * w + x - 1])) { xs.push_back(static_cast<uint32_t>(x)); ys.push_back(0); }
  }
  for (int64_t y = 1; y < h; y++) {
    const uint8_t* a = m + (y - 1) * w;
    const uint8_t* b = m + y * w;
    int64_t x = 0;
    while (x < w) {
      if (x + 8 <= w) {
        uint64_t wa, wb;
        std::memcpy(&wa, a + x, 8);
        std::memcpy(&wb, b + x, 8);
        if (wa == wb) { x += 8; continue; }
        for (int64_t e = x + 8; x < e; x++) {
          if (on(a[x]) != on(b[x])) { xs.push_back(static_cast<uint32_t>(x)); ys.push_back(static_cast<uint32_t>(y)); }
        }
      } else {
        if (on(a[x]) != on(b[x])) { xs.push_back(static_cast<uint32_t>(x)); ys.push_back(static_cast<uint32_t>(y)); }
        x++;
      }
    }
  }
  const size_t t = xs.size();
  std::vector<uint32_t> start(static_cast<size_t>(w) + 1, 0);
  for (uint32_t x : xs) start[x + 1]++;
  for (int64_t x = 0; x < w; x++) start[x + 1] += start[x];
  std::vector<int64_t> pos(t);
  for (size_t i = 0; i < t; i++) pos[start[xs[i]]++] = static_cast<int64_t>(xs[i]) * h + ys[i];
  // Column x-1's bucket now ends where column x's began; positions are sorted overall.
  std::vector<uint32_t> counts;
  counts.reserve(t + 1);
  int64_t prev = 0;
  for (size_t i = 0; i < t; i++) {
    counts.push_back(static_cast<uint32_t>(pos[i] - prev));
    prev = pos[i];
  }
  counts.push_back(static_cast<uint32_t>(n - prev));
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
