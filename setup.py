"""Build hook for the optional C accelerator; everything else is in pyproject.toml.

`optional=True`: where no compiler is present the install still succeeds and the
engine runs its pure-Python paths (atoll.engine.native tells which is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "atoll.engine._native",
            ["src/atoll/engine/_native.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
