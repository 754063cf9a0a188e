"""Uses a PyPI package (humanize), installed by Morel into a cached virtualenv."""

import humanize


def natural_size(n):
    return humanize.naturalsize(int(n))
