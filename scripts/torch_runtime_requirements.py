"""Prints the requirements of an installed torch wheel that libtorch needs at run time.

Used by the container builds (Dockerfile, Dockerfile.cuda): torch is installed with --no-deps into
a folder, and only the native libraries it loads are installed next to it: for a CUDA wheel the
nvidia-* packages (cuBLAS, cuDNN, NCCL, ...) and the cuda-toolkit meta package that pulls the
rest, with their extras and markers as the wheel states them. The Python-only requirements (sympy,
networkx, jinja2, triton, cuda-bindings, ...) are left out: the server runs libtorch from C++ and
never imports torch, so an offline build needs only the library wheels. A CPU wheel prints nothing.

    python3 torch_runtime_requirements.py /opt/torch > requirements.txt
    python3 torch_runtime_requirements.py torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl
"""

import email.parser
import pathlib
import re
import sys
import zipfile

NATIVE_PREFIXES = ("nvidia-", "cuda-toolkit")


def read_metadata(target: pathlib.Path) -> str:
    """The METADATA of torch installed under a folder, or of a torch wheel file."""
    if target.is_file() and target.suffix == ".whl":
        with zipfile.ZipFile(target) as wheel:
            names = [n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if not names:
                raise SystemExit(f"{target} has no .dist-info/METADATA: not a wheel")
            return wheel.read(names[0]).decode("utf-8")
    metadata = sorted(target.glob("torch-*.dist-info/METADATA"))
    if not metadata:
        raise SystemExit(f"no torch-*.dist-info/METADATA under {target}: install torch there first")
    return metadata[0].read_text(encoding="utf-8")


def runtime_requirements(target: pathlib.Path) -> list[str]:
    message = email.parser.Parser().parsestr(read_metadata(target), headersonly=True)
    keep = []
    for requirement in message.get_all("Requires-Dist") or []:
        name = re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")
        if name.startswith(NATIVE_PREFIXES) and "extra ==" not in requirement:
            keep.append(requirement.strip())
    return keep


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: torch_runtime_requirements.py <folder torch was installed into | torch wheel>")
    for line in runtime_requirements(pathlib.Path(sys.argv[1])):
        print(line)
