#include "core/rle.h"

#include <cstring>

namespace sam3 {
namespace {

constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;

inline uint64_t Load8(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// 0x01 in each byte of `v` that is non-zero, 0x00 in the others (any non-zero byte is foreground).
inline uint64_t NonZeroBytes(uint64_t v) { return ((((v & kLow7) + kLow7) | v) >> 7) & kOnes; }

// Index of the first byte at or after `i` whose value differs from `current` (0 or 1), or n.
// Masks are mostly long runs, so whole 8-byte words are skipped while they hold only `current`.
inline int64_t NextChange(const uint8_t* p, int64_t i, int64_t n, uint8_t current) {
  const uint64_t same = current ? kOnes : 0;
  while (i + 8 <= n) {
    if (Load8(p + i) != same) break;
    i += 8;
  }
  while (i < n && (p[i] != 0) == (current != 0)) i++;
  return i;
}

// The positions (x*h + y, ascending) where a run starts in column-major order, read straight from
// row-major bytes (no transpose). A run boundary in column order is either a vertical change
// between rows y-1 and y of one column, or a change from the bottom of column x-1 to the top of
// column x (and position 0 when the first pixel is foreground, since runs start with background).
// Vertical changes are found by comparing whole rows (contiguous, and mostly equal: 32 bytes are
// skipped at a time); where words differ, the changed bytes are picked out of a XOR of their
// foreground flags. They are then bucketed by column with a counting sort; rows are visited in
// order and the sort is stable, so each column's changes stay sorted.
std::vector<int64_t> ColumnOrderChanges(const uint8_t* m, int64_t h, int64_t w) {
  std::vector<uint64_t> changes;  // (x << 32) | y, in row order
  changes.reserve(1024);
  auto on = [](uint8_t v) { return v != 0; };
  auto add = [&changes](int64_t x, int64_t y) { changes.push_back(static_cast<uint64_t>(x) << 32 | static_cast<uint64_t>(y)); };
  if (on(m[0])) add(0, 0);
  for (int64_t x = 1; x < w; x++) {
    if (on(m[x]) != on(m[(h - 1) * w + x - 1])) add(x, 0);
  }
  for (int64_t y = 1; y < h; y++) {
    const uint8_t* a = m + (y - 1) * w;
    const uint8_t* b = m + y * w;
    int64_t x = 0;
    while (x + 8 <= w) {
      if (x + 32 <= w) {
        const uint64_t any = (Load8(a + x) ^ Load8(b + x)) | (Load8(a + x + 8) ^ Load8(b + x + 8)) |
                             (Load8(a + x + 16) ^ Load8(b + x + 16)) | (Load8(a + x + 24) ^ Load8(b + x + 24));
        if (any == 0) {
          x += 32;
          continue;
        }
      }
      uint64_t d = NonZeroBytes(Load8(a + x)) ^ NonZeroBytes(Load8(b + x));
      while (d != 0) {
        add(x + (__builtin_ctzll(d) >> 3), y);  // little-endian: the lowest set bit is the first byte
        d &= d - 1;  // each flagged byte holds exactly one bit
      }
      x += 8;
    }
    for (; x < w; x++) {
      if (on(a[x]) != on(b[x])) add(x, y);
    }
  }
  const size_t t = changes.size();
  std::vector<uint32_t> start(static_cast<size_t>(w) + 1, 0);
  for (uint64_t c : changes) start[(c >> 32) + 1]++;
  for (int64_t x = 0; x < w; x++) start[x + 1] += start[x];
  std::vector<int64_t> pos(t);
  for (uint64_t c : changes) {
    const uint64_t x = c >> 32;
    pos[start[x]++] = static_cast<int64_t>(x) * h + static_cast<int64_t>(c & 0xffffffffULL);
  }
  return pos;
}

// pycocotools' string form: each count as a delta from the count two before it (from the fourth
// on), written 5 bits a character, least significant first, with a continuation bit, offset by 48.
class CountWriter {
 public:
  explicit CountWriter(size_t counts) : s_(counts * 7 + 8, '\0'), p_(&s_[0]) {}
  void Add(int64_t count) {
    int64_t x = count;
    if (i_ > 2) x -= prev2_;
    prev2_ = prev1_;
    prev1_ = count;
    i_++;
    bool more = true;
    while (more) {
      char c = static_cast<char>(x & 0x1f);
      x >>= 5;  // arithmetic shift: negative deltas terminate at -1
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      *p_++ = static_cast<char>(c + 48);
    }
  }
  std::string Take() {
    s_.resize(static_cast<size_t>(p_ - s_.data()));
    return std::move(s_);
  }

 private:
  std::string s_;
  char* p_;
  size_t i_ = 0;
  int64_t prev1_ = 0, prev2_ = 0;
};

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
  const std::vector<int64_t> pos = ColumnOrderChanges(m, h, w);
  std::vector<uint32_t> counts;
  counts.reserve(pos.size() + 1);
  int64_t prev = 0;
  for (int64_t p : pos) {
    counts.push_back(static_cast<uint32_t>(p - prev));
    prev = p;
  }
  counts.push_back(static_cast<uint32_t>(h * w - prev));
  return counts;
}

std::string RleCountsToString(const std::vector<uint32_t>& counts) {
  CountWriter out(counts.size());
  for (uint32_t c : counts) out.Add(static_cast<int64_t>(c));
  return out.Take();
}

std::string RleEncode(const uint8_t* colmajor, int64_t h, int64_t w) {
  return RleCountsToString(RleCounts(colmajor, h, w));
}

std::string RleEncodeRowMajor(const uint8_t* rowmajor, int64_t h, int64_t w) {
  const std::vector<int64_t> pos = ColumnOrderChanges(rowmajor, h, w);
  CountWriter out(pos.size() + 1);
  int64_t prev = 0;
  for (int64_t p : pos) {
    out.Add(p - prev);
    prev = p;
  }
  out.Add(h * w - prev);
  return out.Take();
}

}  // namespace sam3
