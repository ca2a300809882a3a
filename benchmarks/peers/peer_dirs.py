"""Directories the peer scripts may write, whichever user runs them (standard library only: imported
by both `n8n_load.py` under the system Python and `prefect_chain.py` under Prefect's venv)."""

from __future__ import annotations

import os
import sys
import tempfile


def writable_dir(path: str, name: str, who: str) -> str:
	"""`path`, or a per-user directory under the temp dir when this user cannot use it."""
	try:
		os.makedirs(path, exist_ok=True)
		# Usable when this user can write the directory and what another user's run left in it.
		if os.access(path, os.W_OK | os.X_OK) and all(
			os.access(os.path.join(path, entry), os.W_OK) for entry in os.listdir(path)
		):
			return path
	except OSError:
		pass
	alt = os.path.join(tempfile.gettempdir(), f"flow-engine-peers-{os.getuid()}", name)
	os.makedirs(alt, exist_ok=True)
	sys.stderr.write(
		f"{who}: {path} is not writable by this user (or holds another user's files); using {alt}\n"
	)
	sys.stderr.flush()
	return alt
