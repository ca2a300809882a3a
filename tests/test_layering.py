"""The engine must never import frappe: it is what runs on a machine with only PyPI."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "flow_engine" / "engine"


def test_engine_sources_do_not_import_frappe():
	for path in ENGINE.glob("*.py"):
		tree = ast.parse(path.read_text())
		for node in ast.walk(tree):
			names = []
			if isinstance(node, ast.Import):
				names = [alias.name for alias in node.names]
			elif isinstance(node, ast.ImportFrom):
				names = [node.module or ""]
			for name in names:
				assert not name.startswith(
					("frappe", "erpnext", "flow_engine.runtime", "flow_engine.kinds")
				), f"{path.name} imports {name}"


def test_importing_the_engine_loads_no_frappe():
	modules = ", ".join(f"flow_engine.engine.{p.stem}" for p in ENGINE.glob("*.py") if p.stem != "__init__")
	code = f"import sys, importlib\nfor m in '{modules}'.split(', '): importlib.import_module(m)\nprint('frappe' in sys.modules)"
	result = subprocess.run(
		[sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
	)
	assert result.stdout.strip() == "False"
