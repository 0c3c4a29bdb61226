"""STUB: being written."""

def max_pool2d_forward(*args, **kwargs):
    raise NotImplementedError


def max_pool2d_backward(*args, **kwargs):
    raise NotImplementedError


def avg_pool2d_forward(*args, **kwargs):
    raise NotImplementedError


def avg_pool2d_backward(*args, **kwargs):
    raise NotImplementedError


def adaptive_avg_pool2d_forward(*args, **kwargs):
    raise NotImplementedError


def adaptive_avg_pool2d_backward(*args, **kwargs):
    raise NotImplementedError


