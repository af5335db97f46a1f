"""Losses whose gradient the fused kernels compute in the forward pass, as torch custom ops.

Each loss is two ``torch.library.custom_op``s in the "fastloss" namespace:

- ``fastloss::<name>(tensors..., options..., bool[] needs_grad) -> (loss, grad...)``: the
  NumPy API function with ``return_grad=True`` for each differentiable input that needs a
  gradient (an empty tensor stands for one that does not). Backward then only scales it.
- ``fastloss::<name>_backward(grad_output, tensors..., options..., bool[] needs_grad) ->
  grad[]``: the same function with ``grad_output=``. It serves ``reduction="none"``, whose
  gradient depends on the per-position grad_output, and a second backward through a graph kept
  with ``retain_graph=True`` (the first one took the precomputed gradients).

The semantics, checks and error messages are the NumPy API's: the ops only convert tensors to
NumPy views and back. A new loss is one more `FusedLoss` and a wrapper with torch's signature.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch

from .._validation import real_number
from . import _gradient_pool
from ._autograd import refuse_double_backward, scaled_gradient
from ._convert import check_tensor, to_numpy, to_tensor
from ._threads import call_with_torch_threads

__all__ = ["FusedLoss", "Gradient"]


def _coerce(value: Any, kind: str, name: str, function: str) -> Any:
    """An option as its schema type, or a TypeError naming it (torch's own would not)."""
    if kind in ("int?", "float?") and value is None:
        return None
    if kind in ("int", "int?"):
        try:
            return operator.index(value)
        except TypeError:
            raise TypeError(
                f"fastloss.torch.{function}: {name} must be an integer, got {type(value).__name__}"
            ) from None
    if kind in ("float", "float?"):
        return real_number(value, name)
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(
                f"fastloss.torch.{function}: {name} must be a string, got {type(value).__name__}"
            )
        return value
    assert kind == "bool", kind
    return bool(value)


class Gradient(NamedTuple):
    """Where the NumPy function puts the gradient of the differentiable tensor `tensor`: in the
    field `field` of its result (written into the keyword ``<field>_out`` when a buffer is
    given), from a call with the first array and array `swap` exchanged (0: no exchange)."""

    tensor: str
    field: str = "grad"
    swap: int = 0


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class FusedLoss:
    """One loss of the NumPy API as a differentiable torch op.

    `arrays` are the function's positional array arguments, `optional_arrays` its keyword
    arrays that may be None (weight...), `options` its other keywords with their schema types,
    and `loss_shape` gives the shape of the ``reduction="none"`` loss from the arguments (tensors
    or fake tensors). `gradients` says which tensors get gradients and where the function
    returns them; by default the first array's, as the result's ``grad``. One call returns the
    gradients of every tensor with the same `Gradient.swap` (a loss with several, such as
    linear_cross_entropy's, computes them together). Floating tensors must all have the first's
    dtype (as torch requires) except those in `any_dtype`.
    """

    def __init__(
        self,
        name: str,
        function: Callable[..., Any],
        arrays: Sequence[str],
        optional_arrays: Sequence[str],
        options: Sequence[tuple[str, str]],
        loss_shape: Callable[[dict[str, Any]], Sequence[int]],
        gradients: Optional[Sequence[Gradient]] = None,
        any_dtype: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.function = function
        self.arrays = tuple(arrays)
        self.optional_arrays = tuple(optional_arrays)
        self.options = tuple(options)
        self.loss_shape = loss_shape
        self.gradients = tuple(gradients) if gradients else (Gradient(self.arrays[0]),)
        self.any_dtype = tuple(any_dtype)
        self.tensor_names = self.arrays + self.optional_arrays
        self.argument_names = self.tensor_names + tuple(n for n, _ in self.options)
        # where each gradient goes among the op's inputs (autograd's order)
        self.gradient_positions = tuple(self.tensor_names.index(g.tensor) for g in self.gradients)

        arguments = ", ".join(
            [f"Tensor {n}" for n in self.arrays]
            + [f"Tensor? {n}" for n in self.optional_arrays]
            + [f"{kind} {n}" for n, kind in self.options]
        )
        grads = ", ".join(["Tensor"] * len(self.gradients))
        self.op = torch.library.custom_op(
            f"fastloss::{name}",
            self._forward,
            mutates_args=(),
            schema=f"({arguments}, bool[] needs_grad) -> (Tensor, {grads})",
        )
        self.op.register_fake(self._forward_fake)
        self.op.register_autograd(self._backward, setup_context=self._setup_context)
        self.backward_op = torch.library.custom_op(
            f"fastloss::{name}_backward",
            self._backward_impl,
            mutates_args=(),
            schema=f"(Tensor grad_output, {arguments}, bool[] needs_grad) -> Tensor[]",
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
        differentiable = [g.tensor for g in self.gradients]
        if recording:
            for n in self.tensor_names:
                if n not in differentiable and values[n] is not None and values[n].requires_grad:
                    raise NotImplementedError(
                        f"fastloss.torch.{function}: {n} requires grad, but fastloss computes "
                        f"the gradient with respect to {_listed(differentiable)} only; "
                        f"pass {n}.detach(), or use torch's own loss for a gradient there"
                    )
        options = [_coerce(values[n], kind, n, function) for n, kind in self.options]
        reduced = values.get("reduction") != "none"  # "none" computes its gradient in backward
        needs_grad = [
            recording and reduced and values[n] is not None and values[n].requires_grad
            for n in differentiable
        ]
        outputs = self.op(*[values[n] for n in self.tensor_names], *options, needs_grad)
        return outputs[0]

    # -- the ops' implementations ------------------------------------------------------------

    def _call(
        self,
        values: dict[str, Any],
        swap: int,
        gradients: Sequence[Gradient],
        grad_output: Any = None,
    ) -> Any:
        """The NumPy API function on views of the tensors, with the first array and array `swap`
        exchanged, returning `gradients` (if any). One of them goes into the pool's kept buffer
        when that is free and fits (see _gradient_pool)."""
        arrays = [to_numpy(values[n]) for n in self.arrays]
        if swap:
            arrays[0], arrays[swap] = arrays[swap], arrays[0]
        kwargs = {n: to_numpy(values[n]) for n in self.optional_arrays}
        kwargs.update((n, values[n]) for n, _ in self.options)
        if not gradients:
            return call_with_torch_threads(self.function, *arrays, **kwargs)
        kwargs["return_grad"] = True
        if grad_output is not None:
            kwargs["grad_output"] = grad_output
        reused = None
        for g in gradients:  # one buffer at most: two gradients of one shape must not share it
            wrt = to_numpy(values[g.tensor])
            buffer = _gradient_pool.take(wrt.shape, wrt.dtype)
            if buffer is not None:
                reused = g.field, buffer
                kwargs[f"{g.field}_out"] = buffer
                break
        result = call_with_torch_threads(self.function, *arrays, **kwargs)
        if reused is None or getattr(result, reused[0]) is not reused[1]:
            computed = [getattr(result, g.field) for g in gradients]
            _gradient_pool.keep(max(computed, key=lambda a: a.nbytes))
        return result

    def _gradient_tensors(
        self,
        values: dict[str, Any],
        needs_grad: Sequence[bool],
        grad_output: Any = None,
        loss: bool = False,
    ) -> tuple[Any, list[torch.Tensor]]:
        """(the loss, if `loss`; the gradients in `needs_grad`, an empty tensor for each other)
        from one call of the NumPy function per `Gradient.swap` needed (the loss's call has
        none)."""
        needed = [g for g, need in zip(self.gradients, needs_grad) if need]
        swaps = sorted({g.swap for g in needed} | ({0} if loss else set()))
        results = {
            s: self._call(values, s, [g for g in needed if g.swap == s], grad_output) for s in swaps
        }
        first = values[self.arrays[0]]
        grads = [  # (a new empty tensor each: an op's outputs must not alias one another)
            to_tensor(getattr(results[g.swap], g.field)) if need else first.new_empty(0)
            for g, need in zip(self.gradients, needs_grad)
        ]
        if not loss:
            return None, grads
        unswapped = results[0]
        return (unswapped.loss if any(g.swap == 0 for g in needed) else unswapped), grads

    def _forward(self, *args: Any) -> tuple[torch.Tensor, ...]:
        *arguments, needs_grad = args
        values = dict(zip(self.argument_names, arguments))
        loss, grads = self._gradient_tensors(values, needs_grad, loss=True)
        return (to_tensor(loss), *grads)

    def _gradients_fake(self, values: dict[str, Any], needs_grad: Sequence[bool]) -> list:
        first = values[self.arrays[0]]
        return [
            torch.empty_like(values[g.tensor], memory_format=torch.contiguous_format)
            if need
            else first.new_empty(0)
            for g, need in zip(self.gradients, needs_grad)
        ]

    def _forward_fake(self, *args: Any) -> tuple[torch.Tensor, ...]:
        *arguments, needs_grad = args
        values = dict(zip(self.argument_names, arguments))
        shape = tuple(self.loss_shape(values)) if values.get("reduction") == "none" else ()
        loss = values[self.arrays[0]].new_empty(shape)
        return (loss, *self._gradients_fake(values, needs_grad))

    def _backward_impl(self, grad_output: torch.Tensor, *args: Any) -> list[torch.Tensor]:
        *arguments, needs_grad = args
        values = dict(zip(self.argument_names, arguments))
        return self._gradient_tensors(values, needs_grad, to_numpy(grad_output))[1]

    def _backward_fake(self, grad_output: torch.Tensor, *args: Any) -> list[torch.Tensor]:
        *arguments, needs_grad = args
        return self._gradients_fake(dict(zip(self.argument_names, arguments)), needs_grad)

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
        grads: list[Optional[torch.Tensor]] = [None] * (len(self.argument_names) + 1)
        if grad_loss is None:  # (grads are not materialised) no gradient reached the loss
            return tuple(grads)
        wanted = [ctx.needs_input_grad[p] for p in self.gradient_positions]
        # Precomputed gradients are taken once: a second backward (retain_graph=True) and
        # reduction="none" compute theirs with grad_output, all in one call.
        precomputed, ctx.gradients = ctx.gradients, [None] * len(ctx.gradients)
        missing = [want and g is None for want, g in zip(wanted, precomputed)]
        if any(missing):
            arguments = (*ctx.saved_tensors, *ctx.options)
            computed = self.backward_op(grad_loss, *arguments, missing)
        for k, position in enumerate(self.gradient_positions):
            if missing[k]:
                grads[position] = computed[k]
            elif wanted[k]:
                grads[position] = scaled_gradient(precomputed[k], grad_loss)
        return tuple(grads)
