"""Tests of scripts/torch_runtime_requirements.py (which libraries the container images install).

Run from the repository root: ``.venv/bin/python -m unittest discover -s tests/python -t .``
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from torch_runtime_requirements import runtime_requirements  # noqa: E402

CUDA_METADATA = """Metadata-Version: 2.4
Name: torch
Version: 2.14.1
Requires-Dist: filelock
Requires-Dist: sympy>=1.13.3
Requires-Dist: cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"
Requires-Dist: cuda-bindings<14,>=13.0.3; platform_system == "Linux" and python_version < "3.15"
Requires-Dist: nvidia-cudnn-cu13==9.24.0.43; platform_system == "Linux"
Requires-Dist: nvidia_nccl_cu13==2.30.7; platform_system == "Linux"
Requires-Dist: triton~=3.8.0; platform_system == "Linux" and python_version < "3.15"
Requires-Dist: opt-einsum>=3.3; extra == "opt-einsum"

The description.
"""


class TorchRuntimeRequirementsTest(unittest.TestCase):
    def test_keeps_only_the_native_library_packages_with_their_markers(self):
        with tempfile.TemporaryDirectory() as tmp:
            info = Path(tmp) / "torch-2.14.1.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(CUDA_METADATA, encoding="utf-8")
            self.assertEqual(
                runtime_requirements(Path(tmp)),
                [
                    'cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"',
                    'nvidia-cudnn-cu13==9.24.0.43; platform_system == "Linux"',
                    'nvidia_nccl_cu13==2.30.7; platform_system == "Linux"',
                ],
            )

    def test_reads_a_wheel_file_the_same_way(self):
        import zipfile

        with tempfile.TemporaryDirectory() as tmp:
            wheel = Path(tmp) / "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl"
            with zipfile.ZipFile(wheel, "w") as z:
                z.writestr("torch/__init__.py", "")
                z.writestr("torch-2.14.1.dist-info/METADATA", CUDA_METADATA)
            self.assertEqual(len(runtime_requirements(wheel)), 3)
            self.assertTrue(runtime_requirements(wheel)[0].startswith("cuda-toolkit[cublas,cudart]"))

    def test_the_installed_cpu_wheel_needs_nothing_and_a_missing_torch_is_an_error(self):
        import torch

        site = Path(torch.__file__).resolve().parents[1]
        if "+cpu" in torch.__version__:
            self.assertEqual(runtime_requirements(site), [])
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([sys.executable, str(ROOT / "scripts" / "torch_runtime_requirements.py"), tmp], capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("install torch there first", r.stderr)


if __name__ == "__main__":
    unittest.main()
