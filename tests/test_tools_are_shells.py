"""tools/*.py are command-line shells over visionattn.cli, and neither tools nor tests edit sys.path."""
from __future__ import annotations

import ast
import importlib.util

import pytest

from conftest import REPO_ROOT

TOOLS = sorted((REPO_ROOT / 'tools').glob('*.py'))


@pytest.mark.parametrize('tool', TOOLS, ids=[t.stem for t in TOOLS])
def test_a_tool_only_calls_its_program(tool) -> None:
    body = ast.parse(tool.read_text()).body
    docstring, imported, guard = body if len(body) == 3 else (None, *body) if len(body) == 2 else (None, None, None)
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant), \
        f'{tool.name}: a one-line docstring, the import of main and the __main__ guard, nothing else'
    assert isinstance(imported, ast.ImportFrom) and imported.module == f'visionattn.cli.{tool.stem}' and \
        [a.name for a in imported.names] == ['main'], f'{tool.name} must import main from visionattn.cli.{tool.stem}'
    assert isinstance(guard, ast.If) and ast.unparse(guard) == "if __name__ == '__main__':\n    main()"
    assert importlib.util.find_spec(f'visionattn.cli.{tool.stem}') is not None


def _edits_sys_path(node: ast.AST) -> bool:
    """A call of ``sys.path.<method>(...)`` (``insert``, ``append``, ...) in the module's own code."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and ast.unparse(node.func.value) == 'sys.path')


def test_no_tool_test_or_module_edits_its_sys_path() -> None:
    offenders = [path.relative_to(REPO_ROOT).as_posix() for folder in ('tools', 'tests', 'visionattn')
                 for path in (REPO_ROOT / folder).rglob('*.py')
                 if any(_edits_sys_path(node) for node in ast.walk(ast.parse(path.read_text())))]
    assert not offenders, f'{offenders} edit sys.path: import from the package instead'
