"""Prompt lookup drafting: propose the tokens that followed the last earlier occurrence of the context's tail.

Semantics, shared by :func:`propose` and :class:`LookupIndex` (which must agree token for token):

* The context is the token ids so far, prompt and output together: ``tokens[0 .. L-1]``.
* For each ``n`` in ``ngram_sizes``, in the order given (longest first by default, since a longer match predicts
  better), the tail ``tokens[L-n .. L-1]`` is looked up among the earlier n-grams ``tokens[i .. i+n-1]`` with
  ``i + n <= L - 1``: every candidate is followed by at least one token, and the tail itself is never its own match.
  Candidates may overlap the tail (in ``a b a b a`` the tail ``a b a`` matches at ``i = 0``).
* The most recent candidate (largest ``i``) wins: recent text predicts the next tokens better than old text, and
  this is what an index keeping one position per n-gram can answer in O(1).
* The proposal is ``tokens[i+n .. min(i+n+max_tokens, L) - 1]``: up to ``max_tokens`` tokens, cut at the end of the
  context rather than extrapolated past it, so it may be shorter than asked for (in a run ``a a a a`` the most
  recent match leaves one token to copy).
* The first size that matches decides; shorter sizes are tried only when it has no candidate. No match, a context
  shorter than ``n + 1`` for every size, or ``max_tokens == 0`` gives ``[]``.

Drafts are deterministic, so a sampling verifier treats them as a one-hot draft distribution.
"""

from collections.abc import Iterable, Sequence

from engine.spec.drafters import Draft, DraftState

DEFAULT_NGRAM_SIZES: tuple[int, ...] = (3, 2)


def propose(tokens: Sequence[int], max_tokens: int, ngram_sizes: Sequence[int] = DEFAULT_NGRAM_SIZES) -> list[int]:
    """The lookup draft for ``tokens`` (see the module docstring), computed from scratch in O(len(tokens)).

    For a context that grows by a few tokens per step, :class:`LookupIndex` gives the same answer in O(1).
    Raises ``ValueError`` for a negative ``max_tokens`` or an invalid ``ngram_sizes``.
    """
    sizes = _validated_sizes(ngram_sizes)
    _check_max_tokens(max_tokens)
    if max_tokens == 0:
        return []
    context = list(tokens)
    length = len(context)
    for n in sizes:
        if length <= n:
            continue
        tail = context[length - n :]
        last = tail[-1]
        # Scan candidate end positions newest first, so the first hit is the most recent occurrence.
        for end in range(length - 2, n - 2, -1):
            if context[end] == last and context[end - n + 1 : end + 1] == tail:
                return context[end + 1 : end + 1 + max_tokens]
    return []


class LookupIndex:
    """The context of one sequence with, per n-gram, the latest start position that has a follower.

    ``append`` and ``propose`` each cost O(sum of ngram_sizes), independent of the context length. The index only
    grows: append the tokens a step emits (accepted drafts and the verifier's token), never rejected drafts, so
    there is nothing to roll back.
    """

    __slots__ = ("_last_start", "_sizes", "_tokens")

    def __init__(self, tokens: Iterable[int] = (), ngram_sizes: Sequence[int] = DEFAULT_NGRAM_SIZES) -> None:
        """Raises ``ValueError`` for an invalid ``ngram_sizes``: empty, or a size that is not an integer >= 1."""
        self._sizes = _validated_sizes(ngram_sizes)
        self._tokens: list[int] = []
        # Tuples of different lengths never compare equal, so one dict serves every n-gram size.
        self._last_start: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> Sequence[int]:
        """The context so far; a live view, not a copy, so callers must not mutate it."""
        return self._tokens

    @property
    def ngram_sizes(self) -> tuple[int, ...]:
        return self._sizes

    def append(self, token: int) -> None:
        context = self._tokens
        context.append(token)
        length = len(context)
        # The n-grams ending just before the new token now have a follower, so from now on they may be matched;
        # writing in order of position keeps the latest start for each.
        for n in self._sizes:
            start = length - 1 - n
            if start >= 0:
                self._last_start[tuple(context[start : start + n])] = start

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.append(token)

    def propose(self, max_tokens: int) -> list[int]:
        """The same draft as ``propose(self.tokens, max_tokens, self.ngram_sizes)``, in O(1)."""
        _check_max_tokens(max_tokens)
        if max_tokens == 0:
            return []
        context = self._tokens
        length = len(context)
        for n in self._sizes:
            if length <= n:
                continue
            start = self._last_start.get(tuple(context[length - n :]))
            if start is not None:
                return context[start + n : start + n + max_tokens]
        return []


class LookupDrafter:
    """Prompt lookup behind the :class:`~engine.spec.drafters.Drafter` protocol, at O(1) per step.

    One drafter serves one sequence: it keeps a :class:`LookupIndex` of the context it was last given and appends
    only the tokens added since. A context that is not such an extension (shorter, or differing at the last token
    seen) rebuilds the index; the check is that cheap, not a full comparison, because a stale index only costs
    draft quality, never correctness, since every draft is verified.
    """

    def __init__(self, ngram_sizes: Sequence[int] = DEFAULT_NGRAM_SIZES) -> None:
        self._index = LookupIndex(ngram_sizes=ngram_sizes)

    def propose(self, context_ids: Sequence[int], state: DraftState) -> Draft:
        index = self._index
        seen = len(index)
        if seen > len(context_ids) or (seen > 0 and context_ids[seen - 1] != index.tokens[seen - 1]):
            index = self._index = LookupIndex(context_ids, index.ngram_sizes)
        else:
            index.extend(context_ids[seen:])
        return Draft(index.propose(state.max_tokens))


def _validated_sizes(ngram_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(ngram_sizes)
    if not sizes:
        raise ValueError("ngram_sizes must name at least one n-gram size")
    for n in sizes:
        # bool is an int subclass, but True as an n-gram size is a caller's mistake, not a 1.
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"ngram_sizes must be integers >= 1, got {n!r}")
    return sizes


def _check_max_tokens(max_tokens: int) -> None:
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
