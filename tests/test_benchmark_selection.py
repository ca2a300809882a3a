"""`benchmarks/run.py --only`: rows computed inside another benchmark select that benchmark (core tier)."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
	"bench_run", Path(__file__).parents[1] / "benchmarks" / "run.py"
)
bench_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_run)


def test_a_computed_row_runs_the_benchmark_that_computes_it():
	assert bench_run.chosen_benchmarks("4") == ["3"]
	assert bench_run.chosen_benchmarks("2,8,9") == ["1", "5"]
	assert bench_run.chosen_benchmarks("1,2,3,4") == ["1", "3"]


def test_everything_by_default_and_an_unknown_row_is_named():
	assert bench_run.chosen_benchmarks(None) == [key for key in bench_run.BENCHMARKS if key != "v"]
	assert bench_run.chosen_benchmarks("v") == ["v"]  # the volume row runs when asked for
	with pytest.raises(SystemExit, match="no benchmark 'x'"):
		bench_run.chosen_benchmarks("x")
