"""The world's moto answers each request without listing its package directory again."""

from __future__ import annotations

import os

import moto.backends
import moto.core.responses
import pytest
from moto.s3.responses import S3Response

from orchestrator_sandbox.motodispatch import remember_constant_answers


def test_moto_s_constant_answers_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    remember_constant_answers()
    first = moto.core.responses.method_names_from_class(S3Response)

    def no_listing(*args: object) -> None:
        raise AssertionError("moto listed its package directory for a request")

    monkeypatch.setattr(os, "listdir", no_listing)
    modules = moto.backends.list_of_moto_modules()
    assert {"s3", "ec2", "route53", "acm", "elbv2", "iam"} <= set(modules)
    assert moto.core.responses.method_names_from_class(S3Response) is first
    assert "_key_response_put" in first
