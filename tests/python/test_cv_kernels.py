"""Tests of sam3tools.cv_kernels: the pure-torch NMS and connected components that stand in for the
``kernels-community/cv-utils`` kernels in transformers' Sam3VideoModel (torch only, well under a
second; one test runs transformers' own nms_masks / fill_holes_in_mask_scores through them).

Run from the repository root: ``.venv/bin/python -m unittest discover -s tests/python -t .``
"""
from __future__ import annotations

import sys
import unittest
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402

from sam3tools.cv_kernels import cc_2d, generic_nms  # noqa: E402


def bfs_components(grid: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """Brute force: 8-connected components by BFS from each unvisited foreground pixel in raster
    order (so labels come out in raster order of first pixels); (labels, counts) as nested lists."""
    h, w = len(grid), len(grid[0])
    labels = [[0] * w for _ in range(h)]
    members: list[list[tuple[int, int]]] = []
    for y in range(h):
        for x in range(w):
            if not grid[y][x] or labels[y][x]:
                continue
            label = len(members) + 1
            labels[y][x] = label
            queue, seen = deque([(y, x)]), [(y, x)]
            while queue:
                cy, cx = queue.popleft()
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and grid[ny][nx] and not labels[ny][nx]:
                            labels[ny][nx] = label
                            queue.append((ny, nx))
                            seen.append((ny, nx))
            members.append(seen)
    counts = [[0] * w for _ in range(h)]
    for pixels in members:
        for y, x in pixels:
            counts[y][x] = len(pixels)
    return labels, counts


def brute_nms(ious: list[list[float]], scores: list[float], thr: float) -> list[int]:
    """Brute force: repeatedly take the best remaining (highest score, then lowest index), drop those
    overlapping it by more than thr."""
    remaining = list(range(len(scores)))
    kept = []
    while remaining:
        best = min(remaining, key=lambda i: (-scores[i], i))
        kept.append(best)
        remaining = [j for j in remaining if j != best and not ious[best][j] > thr]
    return kept


def as_mask(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[1 if c == "#" else 0 for c in row] for row in rows], dtype=torch.uint8)[None, None]


class Cc2dTest(unittest.TestCase):
    def check(self, mask: torch.Tensor):
        labels, counts = cc_2d(mask, get_counts=True)
        self.assertEqual((labels.dtype, counts.dtype), (torch.int32, torch.int32))
        self.assertEqual(labels.shape, mask.shape)
        self.assertEqual(counts.shape, mask.shape)
        for b in range(mask.shape[0]):
            want_labels, want_counts = bfs_components(mask[b, 0].tolist())
            self.assertEqual(labels[b, 0].tolist(), want_labels)
            self.assertEqual(counts[b, 0].tolist(), want_counts)
        return labels, counts

    def test_hand_made(self):
        # Diagonal-only contacts join (8-connectivity): one component of 4 pixels.
        labels, counts = self.check(as_mask(["#...", ".#..", "..#.", "...#"]))
        self.assertEqual(int(labels.max()), 1)
        self.assertEqual(int(counts.max()), 4)
        # An anti-diagonal chain and a separate blob.
        labels, counts = self.check(as_mask(["...#..", "..#...", ".#..##", "#...##"]))
        self.assertEqual(int(labels.max()), 2)
        self.assertEqual(sorted(set(counts.flatten().tolist())), [0, 4])
        # A ring: its hole is not part of it; the background's components (hole and outside) are two.
        ring = as_mask(["#####", "#...#", "#.#.#", "#...#", "#####"])
        labels, counts = self.check(ring)
        self.assertEqual(int(labels.max()), 2)  # the ring and the dot inside
        bg_labels, bg_counts = self.check(1 - ring)
        self.assertEqual(int(bg_labels.max()), 1)  # the hole's 8 pixels only (the ring touches every border)
        self.assertEqual(int(bg_counts.max()), 8)
        # The background on both sides of that diagonal line is one component too: (0, 1) and (1, 0)
        # touch diagonally across it.
        line = as_mask(["#...", ".#..", "..#.", "...#"])
        bg_labels, _ = self.check(1 - line)
        self.assertEqual(int(bg_labels.max()), 1)
        # A 4-connected wall (no diagonal gap) does split the background.
        wall = as_mask(["##..", ".##.", "..##", "...#"])
        bg_labels, _ = self.check(1 - wall)
        self.assertEqual(int(bg_labels.max()), 2)
        # Empty, full, single pixel, batch of several, odd sizes.
        self.check(torch.zeros(1, 1, 3, 5, dtype=torch.uint8))
        labels, counts = self.check(torch.ones(2, 1, 3, 5, dtype=torch.uint8))
        self.assertTrue(bool((counts == 15).all()))
        self.check(as_mask(["..", ".#"]))

    def test_random_masks(self):
        gen = torch.Generator().manual_seed(0)
        for density in (0.2, 0.45, 0.6, 0.8):
            for h, w in ((7, 9), (16, 16), (13, 5)):
                mask = (torch.rand(3, 1, h, w, generator=gen) < density).to(torch.uint8)
                self.check(mask)

    def test_serpentine(self):
        """A long snake-shaped component (many propagation rounds) stays one component."""
        rows = []
        for y in range(15):
            if y % 2 == 0:
                rows.append("#" * 15)
            else:
                rows.append(("." * 14 + "#") if y % 4 == 1 else ("#" + "." * 14))
        labels, counts = self.check(as_mask(rows))
        self.assertEqual(int(labels.max()), 1)

    def test_counts_optional(self):
        labels = cc_2d(as_mask(["#.", ".."]), get_counts=False)
        self.assertEqual(labels.tolist(), [[[[1, 0], [0, 0]]]])


class GenericNmsTest(unittest.TestCase):
    def test_hand_made(self):
        ious = torch.tensor([[1.0, 0.5, 0.1], [0.5, 1.0, 0.6], [0.1, 0.6, 1.0]])
        scores = torch.tensor([0.9, 0.8, 0.7])
        kept = generic_nms(ious, scores, 0.5)
        self.assertEqual(kept.dtype, torch.int64)
        # IoU 0.5 is not above 0.5: 1 survives 0 and then removes 2 (0.6 > 0.5).
        self.assertEqual(kept.tolist(), [0, 1])
        self.assertEqual(generic_nms(ious, scores, 0.4).tolist(), [0, 2])
        # Visiting order is by score: the best is first whatever its index.
        self.assertEqual(generic_nms(ious, torch.tensor([0.1, 0.2, 0.9]), 0.55).tolist(), [2, 0])
        # Ties: the lower index first.
        self.assertEqual(generic_nms(torch.ones(3, 3), torch.tensor([0.5, 0.5, 0.5]), 0.5).tolist(), [0])
        self.assertEqual(generic_nms(torch.eye(3), torch.tensor([0.5, 0.7, 0.5]), 0.5).tolist(), [1, 0, 2])
        self.assertEqual(generic_nms(torch.zeros(0, 0), torch.zeros(0), 0.5).tolist(), [])

    def test_random(self):
        gen = torch.Generator().manual_seed(1)
        for n in (1, 2, 5, 12, 30):
            for thr in (0.0, 0.1, 0.5, 0.9):
                a = torch.rand(n, n, generator=gen)
                ious = (a + a.T) / 2
                ious.fill_diagonal_(1.0)
                scores = torch.randint(0, 4, (n,), generator=gen).float() / 4  # many ties
                want = brute_nms(ious.tolist(), scores.tolist(), thr)
                self.assertEqual(generic_nms(ious, scores, thr).tolist(), want, f"n={n} thr={thr}")


class InTransformersTest(unittest.TestCase):
    """transformers' own nms_masks and fill_holes_in_mask_scores, with the kernels installed."""

    def test_nms_masks_and_fill_holes(self):
        from transformers.models.sam3_video import modeling_sam3_video as msv

        from sam3tools.cv_kernels import CvKernels, install_cv_kernels

        saved = (msv.cv_utils_kernel, msv._load_cv_utils_kernel_once)
        try:
            install_cv_kernels()
            self.assertIsInstance(msv.cv_utils_kernel, CvKernels)
            # Three detections: 0 and 1 overlap (IoU 0.6), 2 is apart, 3 is under the threshold.
            masks = torch.full((4, 8, 8), -1.0)
            masks[0, 0:4, 0:5] = 1.0
            masks[1, 0:4, 1:5] = 1.0  # IoU with 0: 16/20 = 0.8
            masks[2, 5:8, 5:8] = 1.0
            masks[3, 0:4, 0:5] = 1.0
            probs = torch.tensor([0.6, 0.7, 0.55, 0.2])
            keep = msv.nms_masks(probs, masks, prob_threshold=0.5, iou_threshold=0.5)
            self.assertEqual(keep.tolist(), [False, True, True, False])
            # Hole filling: a 1-pixel hole in a blob is filled (0.1), a lone pixel far away removed (-0.1).
            m = torch.full((1, 1, 10, 10), -2.0)
            m[0, 0, 1:6, 1:6] = 3.0
            m[0, 0, 3, 3] = -1.0  # hole
            m[0, 0, 8, 8] = 2.0  # sprinkle
            out = msv.fill_holes_in_mask_scores(m, max_area=4, fill_holes=True, remove_sprinkles=True)
            self.assertAlmostEqual(float(out[0, 0, 3, 3]), 0.1, places=6)
            self.assertAlmostEqual(float(out[0, 0, 8, 8]), -0.1, places=6)
            changed = (out != m).sum().item()
            self.assertEqual(changed, 2)
        finally:
            msv.cv_utils_kernel, msv._load_cv_utils_kernel_once = saved


if __name__ == "__main__":
    unittest.main()
