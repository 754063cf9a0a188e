"""Python functions of an app that also has a WebAssembly function (echo.wat)."""


def mean(values):
    return sum(values) / len(values)
