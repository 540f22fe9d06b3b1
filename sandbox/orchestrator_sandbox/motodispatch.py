"""moto's server, answering each request without recomputing two constant answers.

For every request, moto's dispatcher lists its own package directory (a listdir and two
hundred isdir calls) to learn which services it has, and each response class finds its
action methods with inspect.getmembers. Neither answer can change while the world runs:
both are remembered after the first request. Measured on a crash-sweep world (profiled),
they were about a third of the CPU moto spent per request, and the world's CPU is shared
with its tests in CI.
"""

from __future__ import annotations

import functools


def remember_constant_answers() -> None:
    import moto.backends
    import moto.core.responses

    if getattr(moto.backends.list_of_moto_modules, "sandbox_patched", False):
        return
    modules = tuple(moto.backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    list_of_moto_modules.sandbox_patched = True  # type: ignore[attr-defined]
    moto.backends.list_of_moto_modules = list_of_moto_modules
    # Looked up by name in the module that imported it.
    moto.core.responses.method_names_from_class = functools.cache(
        moto.core.responses.method_names_from_class
    )
