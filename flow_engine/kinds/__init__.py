"""Step kinds: one small handler per kind, and the registry other apps extend.

Handlers receive a `StepCall` (rendered payload, context, attempt, idempotency key) and return a
result dict, or raise `StepFailed`. They know nothing of runs, waves or the scheduler.
"""
