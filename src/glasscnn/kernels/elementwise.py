"""STUB: being written."""

def add_forward(*args, **kwargs):
    raise NotImplementedError


def add_backward(*args, **kwargs):
    raise NotImplementedError


