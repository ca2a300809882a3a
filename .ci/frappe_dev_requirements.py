"""Install Frappe's development requirements ([tool.bench.dev-dependencies]) that the bench's env lacks.

`bench init` does not install them, and Frappe's test utilities import some (freezegun, …).
Run with the bench's Python from the bench directory.
"""

import importlib.metadata
import subprocess
import sys

import tomllib

with open("apps/frappe/pyproject.toml", "rb") as file:
	wanted = tomllib.load(file).get("tool", {}).get("bench", {}).get("dev-dependencies", {})
missing = []
for name, spec in wanted.items():
	try:
		importlib.metadata.version(name)
	except importlib.metadata.PackageNotFoundError:
		missing.append(name + (spec if spec[:1] in "<>=!~" else f"=={spec}"))
if missing:
	print("installing Frappe's development requirements:", " ".join(missing))
	subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)
