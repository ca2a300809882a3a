"""Validation of a run's input payload against a template's JSON Schema; errors name the path."""

from __future__ import annotations

from typing import Any

import jsonschema


def check_schema(schema: Any) -> str | None:
	"""A problem with the schema itself, or None."""
	if not isinstance(schema, dict):
		return "must be a JSON object (a JSON Schema)"
	try:
		jsonschema.validators.validator_for(schema).check_schema(schema)
	except jsonschema.SchemaError as error:
		return f"is not a valid JSON Schema: {error.message}"
	return None


def payload_errors(schema: dict, payload: Any, limit: int = 20) -> list[tuple[str, str]]:
	"""(path, message) for every place the payload breaks the schema; path like 'items/0/qty'."""
	validator = jsonschema.validators.validator_for(schema)(schema)
	errors = sorted(
		validator.iter_errors(payload), key=lambda error: [str(part) for part in error.absolute_path]
	)
	return [
		("/".join(str(part) for part in error.absolute_path) or "(root)", error.message)
		for error in errors[:limit]
	]
