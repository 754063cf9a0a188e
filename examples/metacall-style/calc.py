"""A project described only by metacall.json, as seed 000's clients deploy them."""


def multiply(a, b):
    return a * b


def _private_helper():
    return "not exported"
