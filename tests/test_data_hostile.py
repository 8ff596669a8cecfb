"""The data loaders under hostile input: the families of generated bad files, pickles and
arguments in scripts/hostile_data.py each end in a documented error or in the result an
independent oracle computes, and the bombs (decompression and pickle bombs, hangs) end
within their time and memory allowance, measured in a subprocess."""

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "hostile_data.py"
_spec = importlib.util.spec_from_file_location("hostile_data", SCRIPT)
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)


@pytest.mark.parametrize("family", list(hostile.FAMILIES))
def test_generated_inputs_end_in_a_documented_error_or_the_oracles_result(family):
    strategy, run, oracle = hostile.FAMILIES[family]

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(value):
        kind = hostile.outcome(run, oracle, value)
        assert kind == "ok" or kind.startswith("refused"), kind

    check()


def test_outcome_flags_undocumented_errors_and_wrong_results():
    # the classifier the families rely on can fail: a stray exception, a refused valid
    # input, an accepted invalid one and a wrong result are each reported
    def invalid(_):
        raise hostile.Invalid

    assert hostile.outcome(lambda v: 1 / 0, None, 0).startswith("UNDOCUMENTED (ZeroDivisionError")
    assert hostile.outcome(lambda v: v, invalid, 0) == "WRONG: accepted an invalid input"
    assert hostile.outcome(lambda v: v + 1, lambda v: v, 0) == "WRONG: result differs from the oracle"
    refuse = hostile.read_idx_bytes  # refuses b"" with IDXFormatError
    assert hostile.outcome(refuse, lambda v: 0, b"").startswith("WRONG: refused a valid input")
    assert hostile.outcome(refuse, invalid, b"") == "refused (IDXFormatError)"


def test_bombs_end_in_bounded_time_and_memory():
    every, rows = hostile.run_bombs(timeout=180)
    assert len(every) >= 15
    assert [r["name"] for r in rows] == every, rows[-1]  # no hang, no crash
    unbounded = [r for r in rows if not hostile.bounded(r)]
    assert not unbounded, unbounded
