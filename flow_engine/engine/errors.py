"""Errors and validation issues shared by the engine modules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
	"""One problem in a flow definition, located by step and field."""

	message: str
	step_id: str | None = None
	field: str | None = None
	label: str | None = None
	code: str = "invalid"

	def location(self) -> str:
		if self.step_id is None:
			return self.field or "definition"
		step = f"Step '{self.step_id}'"
		if self.label:
			step += f" ({self.label})"
		return f"{step} → {self.field}" if self.field else step

	def __str__(self) -> str:
		return f"{self.location()}: {self.message}"

	def as_dict(self) -> dict:
		return {
			"step_id": self.step_id,
			"field": self.field,
			"label": self.label,
			"code": self.code,
			"message": self.message,
			"text": str(self),
		}


class DefinitionError(ValueError):
	"""A flow definition that cannot be used; carries every issue found."""

	def __init__(self, issues: list[Issue], flow: str | None = None):
		self.issues = list(issues)
		self.flow = flow
		super().__init__(self.describe())

	def describe(self) -> str:
		head = f"Flow '{self.flow}' is invalid" if self.flow else "Flow definition is invalid"
		lines = [f"{head} ({len(self.issues)} problem{'s' if len(self.issues) != 1 else ''}):"]
		lines += [f"- {issue}" for issue in self.issues]
		return "\n".join(lines)


class ConditionError(ValueError):
	"""A condition whose structure is wrong (unknown op, bad group, too deep)."""
