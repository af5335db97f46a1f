"""Losses whose gradient the fused kernels compute in the forward pass, as torch custom ops.

Each loss is two ``torch.library.custom_op``s in the "fastloss" namespace:

- ``fastloss::<name>(tensors..., options..., bool[] needs_grad) -> (loss, grad...)``: the
  NumPy API function with ``return_grad=True`` for each differentiable input that needs a
  gradient (an empty tensor stands for one that does not). Backward then only scales it.
- ``fastloss::<name>_backward(grad_output, tensors..., options..., int wrt) -> grad``: the same
  function with ``grad_output=``. It serves ``reduction="none"``, whose gradient depends on the
  per-position grad_output, and a second backward through a graph kept with
  ``retain_graph=True`` (the first one took the precomputed gradient).

The semantics, checks and error messages are the NumPy API's: the ops only convert tensors to
NumPy views and back. A new loss is one more `FusedLoss` and a wrapper with torch's signature.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Optional, Sequence

import torch

from .._validation import real_number
from . import _gradient_pool
from ._autograd import refuse_double_backward, scaled_gradient
from ._convert import check_tensor, to_numpy, to_tensor
from ._threads import call_with_torch_threads

__all__ = ["FusedLoss"]


def _coerce(value: Any, kind: str, name: str, function: str) -> Any:
    """An option as its schema type, or a TypeError naming it (torch's own would not)."""
    if kind == "int?" and value is None:
        return None
    if kind in ("int", "int?"):
        try:
            return operator.index(value)
        except TypeError:
            raise TypeError(
                f"fastloss.torch.{function}: {name} must be an integer, got {type(value).__name__}"
            ) from None
    if kind == "float":
        return real_number(value, name)
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(
                f"fastloss.torch.{function}: {name} must be a string, got {type(value).__name__}"
            )
        return value
    assert kind == "bool", kind
    return bool(value)


class FusedLoss:
    """One loss of the NumPy API as a differentiable torch op.

    `arrays` are the function's positional array arguments; the first `differentiable` of them
    get gradients (more than one only for a loss symmetric in its first two, whose second
    gradient is the first's with the two swapped). `optional_arrays` are its keyword arrays
    that may be None (weight...), `options` its other keywords with their schema types, and
    `loss_shape` gives the shape of the ``reduction="none"`` loss from the arguments (tensors
    or fake tensors). Floating tensors must all have the first's dtype (as torch requires)
    except those in `any_dtype`.
    """

    def __init__(
        self,
        name: str,
        function: Callable[..., Any],
        arrays: Sequence[str],
        optional_arrays: Sequence[str],
        options: Sequence[tuple[str, str]],
        loss_shape: Callable[[dict[str, Any]], Sequence[int]],
        differentiable: int = 1,
        any_dtype: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.function = function
        self.arrays = tuple(arrays)
        self.optional_arrays = tuple(optional_arrays)
        self.options = tuple(options)
        self.loss_shape = loss_shape
        self.differentiable = differentiable
        self.any_dtype = tuple(any_dtype)
        self.tensor_names = self.arrays + self.optional_arrays
        self.argument_names = self.tensor_names + tuple(n for n, _ in self.options)

        arguments = ", ".join(
            [f"Tensor {n}" for n in self.arrays]
            + [f"Tensor? {n}" for n in self.optional_arrays]
            + [f"{kind} {n}" for n, kind in self.options]
        )
        grads = ", ".join(["Tensor"] * (1 + differentiable))
        self.op = torch.library.custom_op(
            f"fastloss::{name}",
            self._forward,
            mutates_args=(),
            schema=f"({arguments}, bool[] needs_grad) -> ({grads})",
        )
        self.op.register_fake(self._forward_fake)
        self.op.register_autograd(self._backward, setup_context=self._setup_context)
        self.backward_op = torch.library.custom_op(
            f"fastloss::{name}_backward",
            self._backward_impl,
            mutates_args=(),
            schema=f"(Tensor grad_output, {arguments}, int wrt) -> Tensor",
        )
        self.backward_op.register_fake(self._backward_fake)

    # -- the public call ---------------------------------------------------------------------

    def __call__(self, **values: Any) -> torch.Tensor:
        """The loss, from keyword arguments named as the op's (the wrappers map torch's names)."""
        function = self.name
        for n in self.arrays:
            check_tensor(values[n], n, function)
        for n in self.optional_arrays:
            check_tensor(values[n], n, function, optional=True)
        first = values[self.arrays[0]]
        for n in self.tensor_names[1:]:
            t = values[n]
            if t is not None and t.is_floating_point() and t.dtype != first.dtype:
                if n not in self.any_dtype:
                    raise TypeError(
                        f"fastloss.torch.{function}: {n} has dtype {t.dtype} but "
                        f"{self.arrays[0]} has dtype {first.dtype}; they must be equal"
                    )
        recording = torch.is_grad_enabled()
        if recording:
            differentiable = self.arrays[: self.differentiable]
            for n in self.tensor_names[self.differentiable :]:
                if values[n] is not None and values[n].requires_grad:
                    raise NotImplementedError(
                        f"fastloss.torch.{function}: {n} requires grad, but fastloss computes "
                        f"the gradient with respect to {' and '.join(differentiable)} only; "
                        f"pass {n}.detach(), or use torch's own loss for a gradient there"
                    )
        options = [_coerce(values[n], kind, n, function) for n, kind in self.options]
        reduced = values.get("reduction") != "none"  # "none" computes its gradient in backward
        needs_grad = [
            recording and reduced and values[n].requires_grad
            for n in self.arrays[: self.differentiable]
        ]
        outputs = self.op(*[values[n] for n in self.tensor_names], *options, needs_grad)
        return outputs[0]

    # -- the ops' implementations ------------------------------------------------------------

    def _call(
        self, values: dict[str, Any], wrt: int, return_grad: bool, grad_output: Any = None
    ) -> Any:
        """The NumPy API function on views of the tensors; `wrt` 1 swaps the first two arrays.
        A gradient goes into the pool's kept buffer when it is free (see _gradient_pool)."""
        arrays = [to_numpy(values[n]) for n in self.arrays]
        if wrt:
            arrays[0], arrays[wrt] = arrays[wrt], arrays[0]
        kwargs = {n: to_numpy(values[n]) for n in self.optional_arrays}
        kwargs.update((n, values[n]) for n, _ in self.options)
        if not return_grad:
            return call_with_torch_threads(self.function, *arrays, **kwargs)
        kwargs["return_grad"] = True
        if grad_output is not None:
            kwargs["grad_output"] = grad_output
        reused = _gradient_pool.take(arrays[0].shape, arrays[0].dtype)
        result = call_with_torch_threads(self.function, *arrays, grad_out=reused, **kwargs)
        if result.grad is not reused:
            _gradient_pool.keep(result.grad)
        return result

    def _forward(self, *args: Any) -> tuple[torch.Tensor, ...]:
        *arguments, needs_grad = args
        values = dict(zip(self.argument_names, arguments))
        first = values[self.arrays[0]]
        result = self._call(values, 0, needs_grad[0])
        loss = result.loss if needs_grad[0] else result
        grads = [to_tensor(result.grad) if needs_grad[0] else first.new_empty(0)]
        for wrt in range(1, self.differentiable):
            if needs_grad[wrt]:
                grads.append(to_tensor(self._call(values, wrt, True).grad))
            else:
                grads.append(first.new_empty(0))
        return (to_tensor(loss), *grads)

    def _forward_fake(self, *args: Any) -> tuple[torch.Tensor, ...]:
        *arguments, needs_grad = args
        values = dict(zip(self.argument_names, arguments))
        first = values[self.arrays[0]]
        shape = tuple(self.loss_shape(values)) if values.get("reduction") == "none" else ()
        grads = [
            torch.empty_like(values[n], memory_format=torch.contiguous_format)
            if need
            else first.new_empty(0)
            for n, need in zip(self.arrays, needs_grad)
        ]
        return (first.new_empty(shape), *grads)

    def _backward_impl(self, grad_output: torch.Tensor, *args: Any) -> torch.Tensor:
        *arguments, wrt = args
        values = dict(zip(self.argument_names, arguments))
        result = self._call(values, wrt, True, grad_output=to_numpy(grad_output))
        return to_tensor(result.grad)

    def _backward_fake(self, grad_output: torch.Tensor, *args: Any) -> torch.Tensor:
        *arguments, wrt = args
        values = dict(zip(self.argument_names, arguments))
        return torch.empty_like(values[self.arrays[wrt]], memory_format=torch.contiguous_format)

    # -- autograd ----------------------------------------------------------------------------

    def _setup_context(self, ctx: Any, inputs: tuple, output: tuple) -> None:
        *arguments, needs_grad = inputs
        tensors = len(self.tensor_names)
        ctx.save_for_backward(*arguments[:tensors])
        ctx.options = arguments[tensors:]
        # The gradients are outputs that autograd must not differentiate; held as attributes
        # (not saved tensors) so that backward can take them and hand them on without a copy.
        ctx.mark_non_differentiable(*output[1:])
        # Autograd would otherwise fill a zero "gradient" for each of those outputs before
        # calling backward: a write as large as the input, for nothing.
        ctx.set_materialize_grads(False)
        ctx.gradients = [g if need else None for g, need in zip(output[1:], needs_grad)]

    def _backward(
        self, ctx: Any, grad_loss: torch.Tensor, *unused: Any
    ) -> tuple[Optional[torch.Tensor], ...]:
        refuse_double_backward(self.name)
        if grad_loss is None:  # (grads are not materialised) no gradient reached the loss
            return (None,) * (len(self.argument_names) + 1)
        arguments = (*ctx.saved_tensors, *ctx.options)
        grads: list[Optional[torch.Tensor]] = []
        for wrt in range(self.differentiable):
            if not ctx.needs_input_grad[wrt]:
                grads.append(None)
                continue
            precomputed, ctx.gradients[wrt] = ctx.gradients[wrt], None
            if precomputed is not None:
                grads.append(scaled_gradient(precomputed, grad_loss))
            else:
                grads.append(self.backward_op(grad_loss, *arguments, wrt))
        return (*grads, *[None] * (len(self.argument_names) + 1 - self.differentiable))
