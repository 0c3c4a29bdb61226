"""STUB: being written."""

def linear_forward(*args, **kwargs):
    raise NotImplementedError


def linear_backward(*args, **kwargs):
    raise NotImplementedError


def flatten_forward(*args, **kwargs):
    raise NotImplementedError


def flatten_backward(*args, **kwargs):
    raise NotImplementedError


