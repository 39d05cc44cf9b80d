"""The public surface: every name in ``s2mask.__all__`` resolves, lazily, to something documented."""

from __future__ import annotations

import subprocess
import sys

import s2mask


def test_every_public_name_resolves_and_is_documented():
    for name in s2mask.__all__:
        obj = getattr(s2mask, name)
        assert name == "__version__" or obj.__doc__, f"s2mask.{name} has no docstring"


def test_import_and_help_do_not_load_torch():
    code = "import sys, s2mask, s2mask.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
