"""ferry.deploy.k8s.ClusterOptions and termination_grace (issue 20 item 2)."""

from __future__ import annotations

import pytest

from ferry.deploy.k8s import GRACE_MARGIN_S, ClusterOptions, termination_grace
from ferry.errors import InputError


@pytest.mark.parametrize("options", [
    ClusterOptions(image="ferry-iris:1"),
    ClusterOptions(image="reg.local:5000/ferry@sha256:abc", name="iris-prod", namespace="ml",
                   replicas=1, hpa_min=1, hpa_max=1, cpu="250m", memory="512Mi"),
    ClusterOptions(image="x", cpu="1.5", memory="2G"),
], ids=["defaults", "small", "decimal"])
def test_valid_options_pass(options):
    options.check()


@pytest.mark.parametrize(("options", "phrase"), [
    (ClusterOptions(image="x", cpu="0"), "--cpu '0'"),
    (ClusterOptions(image="x", cpu="1.2345"), "--cpu '1.2345'"),
    (ClusterOptions(image="x", memory="lots"), "--memory 'lots'"),
    (ClusterOptions(image="x", replicas=0), "at least 1"),
    (ClusterOptions(image="x", hpa_min=4, hpa_max=2), "--hpa-max 2 is below"),
    (ClusterOptions(image="x", name="-bad"), "--name '-bad'"),
    (ClusterOptions(image="x", namespace="UPPER"), "--namespace 'UPPER'"),
    (ClusterOptions(image="two words"), "--image 'two words'"),
    (ClusterOptions(image="x", cpu_target=0), "--cpu-target 0"),
], ids=["cpu-zero", "cpu-precision", "memory", "replicas", "hpa", "name", "namespace", "image",
        "target"])
def test_invalid_options_name_the_flag(options, phrase):
    with pytest.raises(InputError, match=f"^{phrase}" if phrase.startswith("--") else phrase):
        options.check()


def test_the_grace_outlasts_the_servers_own_stop():
    assert termination_grace(0.0, 30.0) == 30 + GRACE_MARGIN_S
    assert termination_grace(5.2, 30.0) == 36 + GRACE_MARGIN_S
    assert termination_grace(5.2, 30.0) > 35.2
