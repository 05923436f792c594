"""The README's Python examples run as written (the front door stays true)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(_python_blocks()) >= 2


@pytest.mark.slow
@pytest.mark.quick_codegen  # compile-bound (small programs, each run once): see tests/conftest.py
def test_readme_examples_run():
    namespace: dict = {}
    for i, block in enumerate(_python_blocks()):  # in order: later blocks use names from earlier ones
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
