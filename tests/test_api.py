"""The public surface: every name in ``s2mask.__all__`` resolves, lazily, to something documented."""

from __future__ import annotations

import subprocess
import sys

import s2mask


def test_every_public_name_resolves_and_is_documented():
    for name in s2mask.__all__:
        obj = getattr(s2mask, name)
        assert name == "__version__" or obj.__doc__, f"s2mask.{name} has no docstring"


def test_importing_the_package_and_the_cli_does_not_load_torch():  # --help: tests/test_cli.py
    code = "import sys, s2mask, s2mask.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_type_checkers_see_every_public_name_where_it_lives():
    """``__all__`` is a literal and a ``TYPE_CHECKING`` block imports each name from the module it resolves to."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(s2mask.__file__).read_text())
    seen = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                seen.update({alias.name: imp.module for alias in imp.names})
    assert seen == s2mask._EXPORTS
    assert s2mask.__all__ == ["__version__", *s2mask._EXPORTS]
    assert (Path(s2mask.__file__).parent / "py.typed").is_file()
