"""Setuptools hook for the optional compiled build (docs/compiled.md).

With COMPILE_HUBBUB=1 a wheel's hot-path modules (`hubbub.compiled.MODULES`) are compiled with
mypyc; without it, and always for editable installs, hubbub is pure Python.
"""

import os
import runpy

from setuptools import Extension, setup


def extensions() -> list:
    if os.environ.get("COMPILE_HUBBUB", "0") in ("", "0"):
        return []
    from mypyc.build import mypycify  # a build requirement only when compiling (build_support/backend.py)

    build = runpy.run_path("src/hubbub/compiled.py")
    modules, helper_modules = build["MODULES"], build["C_HELPERS"]
    paths = ["src/" + name.replace(".", "/") + ".py" for name in modules]
    # multi_file: one C file per module compiles in 70 s instead of 90, and runs as fast (docs/compiled.md)
    native = mypycify(paths, opt_level="3", group_name="hubbub_native", multi_file=True)
    # The direct writes' send(2) with the GIL held (src/hubbub/transports/_send.c says why).
    helpers = [Extension(name, ["src/" + name.replace(".", "/") + ".c"]) for name in helper_modules]
    return [*native, *helpers]


setup(ext_modules=extensions())
