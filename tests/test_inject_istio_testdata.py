"""``mesh inject`` and the ``/inject`` webhook against Istio 1.19's own injection test cases
(pkg/kube/inject, ``TestInjection``).

Every case Istio's test expects to succeed must succeed here and give the same objects as its
golden ``.injected`` file, after the normalizing ``tests/istio_inject_cases.py`` describes (Go's
typed-struct zero values, canonical quantities, JSON key order); every case it expects to fail
must fail, with the same words in the error; an expected warning must be printed. Needs
``ISTIO_SRC`` (``tests/istio_src.py``); nothing of Istio's test data is stored here.
"""

from __future__ import annotations

import istio_inject_cases as cases
import istio_src
import pytest

pytestmark = istio_src.needed

CASES = cases.cases() if istio_src.available() else []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_istio_injection_case(case, tmp_path):
    outcome = cases.run(case, tmp_path)
    if case.error:
        assert outcome.status == 2, f"Istio refuses {case.input}; mesh injected it"
        assert case.error in outcome.stderr.lower(), outcome.stderr
        assert outcome.output == "", "nothing is written when a document fails"
        return
    assert outcome.status == 0, outcome.stderr
    if case.log:
        assert case.log in outcome.stderr
    assert outcome.equal, f"{case.want}: differs from Istio's golden:\n" + "\n".join(outcome.diff[:20])


WEBHOOK_CASES = [c for c in CASES if not c.error and c.input not in cases.WEBHOOK_SKIPPED]


@pytest.mark.parametrize("case", WEBHOOK_CASES, ids=[c.name for c in WEBHOOK_CASES])
def test_istio_injection_case_through_the_webhook(case, tmp_path):
    """The same case as kube-apiserver would send it: each workload's pod through ``/inject``."""
    for i, diff in enumerate(cases.run_webhook(case, tmp_path)):
        assert not diff, f"{case.want} part {i}: the webhook's pod differs from Istio's:\n" + "\n".join(diff[:20])


def test_the_table_covers_every_golden():
    """As the Go test does: every ``.injected`` file in the folder is some case's golden."""
    goldens = {name for name in istio_src.ls(cases.TESTDATA) if name.endswith(".injected")}
    assert goldens == {c.want for c in CASES if c.want}
    assert len(CASES) >= 90


def test_normalizing_keeps_real_differences():
    """The normalizer must not hide a change that matters: an extra env var, a missing volume source."""
    golden = istio_src.show(f"{cases.TESTDATA}/hello.yaml.injected")
    want = cases.normalize(golden)
    assert cases.normalize(golden.replace("memory: 1Gi", "memory: 1024Mi")) == want  # same quantity
    assert cases.normalize(golden.replace("memory: 1Gi", "memory: 1G")) != want  # another quantity
    assert cases.normalize(golden.replace("medium: Memory", "medium: Disk")) != want
    assert cases.normalize(golden.replace("resource: limits.cpu", "resource: limits.memory", 1)) != want
