"""{{app}}: every top-level function here (names not starting with `_`) is callable over HTTP.

The JSON body of a call is bound to the arguments: an object by name, an array by position.
"""


def greet(name="world"):
    """POST {"name": "Ada"} → {"message": "Hello, Ada!"}"""
    return {"message": f"Hello, {name}!"}
