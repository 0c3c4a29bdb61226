"""A module as a notebook shows it: its layers, their output shapes and parameter counts."""

from __future__ import annotations

import html

import numpy as np

from glasscnn.nn.module import Module


def _params(module: Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _output_shapes(module: Module) -> tuple[dict[str, tuple[int, ...]], str]:
    """{dotted name: output shape without the batch axis} from a pass on one zero sample,
    and a note saying why there are none (no known input shape, or the pass failed)."""
    from glasscnn.nn.trace import record

    if module.input_shape is None:
        return {}, "set .input_shape (one sample's shape) to see output shapes"
    dtype = next((p.dtype for p in module.parameters()), np.dtype(np.float32))
    try:
        _, calls = record(module, np.zeros((1, *module.input_shape), dtype))
    except Exception as err:  # the display must show, not raise: the reason is printed
        return {}, f"output shapes unavailable: {type(err).__name__}: {err}"
    shapes: dict[str, tuple[int, ...]] = {}
    for call in calls:
        if call.output_shape is not None:
            shapes.setdefault(call.name, call.output_shape[1:])
    return shapes, ""


def module_html(module: Module) -> str:
    """An HTML table: every module (indented by depth), its arguments, output shape, and
    the parameters it holds (its descendants' included), with the totals below.

    Args:
        module: any module; output shapes appear when its ``input_shape`` is set.

    Returns:
        The HTML text.
    """
    esc = html.escape
    shapes, note = _output_shapes(module)
    title = module.name or type(module).__name__
    if module.input_shape is not None:
        title += f", input {'x'.join(map(str, module.input_shape))}"
    rows = []
    for name, m in module.named_modules():
        if not name and m._modules:
            continue
        depth = name.count(".") if name else 0
        kind = f"{type(m).__name__}({m.extra_repr()})" if not m._modules else type(m).__name__
        shape = shapes.get(name)
        rows.append(
            f"<tr><td style=\"text-align:left;padding-left:{0.5 + 1.2 * depth}em\">"
            f"{esc(name or type(m).__name__.lower())}</td>"
            f"<td style=\"text-align:left\"><code>{esc(kind)}</code></td>"
            f"<td style=\"text-align:left\">{esc('x'.join(map(str, shape)) if shape else '')}"
            f"</td><td style=\"text-align:right\">{_params(m):,}</td></tr>")
    params = module.parameters()
    size = sum(p.data.nbytes for p in params) + sum(
        np.asarray(b).nbytes for _, b in module.named_buffers())
    footer = (f"{sum(p.numel() for p in params):,} parameters "
              f"({size / 1e6:,.3f} MB with buffers)")
    return (f"<div><strong>{esc(title)}</strong><table><thead><tr>"
            "<th style=\"text-align:left\">layer</th><th style=\"text-align:left\">type</th>"
            "<th style=\"text-align:left\">output</th><th style=\"text-align:right\">params"
            f"</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p>{esc(footer)}{'; ' + esc(note) if note else ''}</p></div>")
