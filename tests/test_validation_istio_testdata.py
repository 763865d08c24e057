"""mesh.config.validation against Istio 1.19's own verdicts, both directions.

Every kind-level table in ``pkg/config/validation/validation_test.go`` (TestValidateGateway,
TestValidateVirtualService, ... TestValidateWasmPlugin) and the field-level ones (TestValidateHTTPRoute,
TestValidateConnectionPool, TestValidateLocalityLbSetting, TestValidateTlsOptions, ...) is read at
test time from the source named by ``ISTIO_SRC`` (``tests/istio_src.py``; skipped without it). Each
case's Go proto literal is turned into the object a user would apply — a field-level input set into
the smallest otherwise valid object (``tests/istio_validation_cases.py``) — and mesh must give
Istio's verdict: rejected when Istio's test expects an error, accepted when it does not, and a
warning exactly when Istio's test expects one (for tables that look at warnings). Where Istio's test names the error text, mesh's message must
contain it too, unless the difference is a named simplification (``TEXT_DIFFERS``).

All converted cases agree (597 of 597 at the time of writing: 546 objects, 51 one-value checks); a
regression fails its case.
"""

from __future__ import annotations

import collections

import istio_src
import istio_validation_cases
import pytest

from mesh.config import validation

pytestmark = istio_src.needed

# case ids whose error text differs from the substring Istio's test looks for, and why.
TEXT_DIFFERS: dict[str, str] = {
    "TestValidateEnvoyFilter/match with invalid regex":
        "RE2's C++ wording (bad repetition operator: ++) where Go's regexp says invalid nested repetition operator",
    "TestValidateEnvoyFilter/invalid patch value":
        "the patch value is decoded with envoy-data-plane (pydantic), not Go's protojson, so the reason differs",
}


def _cases():
    if not istio_src.available():
        return []
    return istio_validation_cases.cases()


CASES = _cases()


def verdict(obj: dict) -> tuple[bool, bool, list[str]]:
    problems = validation.validate(obj)
    return (not any(p.is_error for p in problems), any(not p.is_error for p in problems),
            [p.message for p in problems if p.is_error])


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if c.primitive is not None])
def test_mesh_primitive_checks_give_istios_verdict(case):
    """ValidateFQDN, ValidateWildcardDomain, ValidatePortName, ValidateIPSubnet, validateLocalities,
    ValidateHTTPHeaderValue, ValidateDuration, ...: one value in, an error or none out."""
    check, value = case.primitive
    error = check(value)
    assert (error is None) == case.valid, (case.line, value, error)
    if case.error_text and case.id not in TEXT_DIFFERS:
        assert case.error_text in (error or ""), (case.error_text, error)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if c.obj is not None])
def test_mesh_gives_istios_verdict(case):
    valid, warning, errors = verdict(case.obj)
    if not case.checks_warning:
        warning = case.warning
    assert (valid, warning) == (case.valid, case.warning), (
        f"Istio (validation_test.go line {case.line}): valid={case.valid} warning={case.warning}; "
        f"mesh: valid={valid} warning={warning} {errors}")
    if case.error_text and case.id not in TEXT_DIFFERS:
        assert any(case.error_text in e for e in errors), (case.error_text, errors)


def test_every_kind_is_covered_and_few_cases_are_left_out():
    """The converter reads every kind's table; what it cannot convert is counted, not hidden."""
    by_test = collections.Counter(c.test for c in CASES if c.obj is not None or c.primitive is not None)
    assert set(by_test) == {*istio_validation_cases.KIND_TESTS, *istio_validation_cases.WRAPPED_TESTS,
                            *istio_validation_cases.PRIMITIVE_TESTS, "Test_validateExportTo"}
    unconverted = [c for c in CASES if c.obj is None and c.primitive is None]
    # only what no Kubernetes object can express: a Go type mismatch ("invalid message") or a nil
    # passed straight to a field-level function
    assert all(c.unconverted.startswith(("input is not a", "nil input")) for c in unconverted), [
        (c.id, c.unconverted) for c in unconverted]
    assert len(CASES) - len(unconverted) >= 590


def test_known_differences_are_real_cases():
    ids = {c.id for c in CASES}
    assert set(TEXT_DIFFERS) <= ids, set(TEXT_DIFFERS) - ids

