"""Small builders for definitions used across core tests."""


def step(step_id, kind="wait", **extra):
	data = {"id": step_id, "kind": kind}
	data.update(extra)
	return data


def todo(step_id, **extra):
	return step(step_id, "create_doc", payload={"doctype": "ToDo", "fields": {"description": "x"}}, **extra)


def cond(step_id, field="doc.status", value="Open", **extra):
	return step(
		step_id, "condition", payload={"condition": {"field": field, "op": "==", "value": value}}, **extra
	)


def flow(*steps, **extra):
	data = {"version": 1, "steps": list(steps)}
	data.update(extra)
	return data
