"""What an embeddings request's answer becomes: outcomes, failures, and the assembled rows.

The wire's vectors are decoded into one matrix (:func:`_wire_matrix`), their ``index``
values checked (:func:`_index_problem`), and the answered pieces gathered into one unit
row per text (:class:`_Assembler`). Shared by the synchronous and the Batch API backends.
"""

from __future__ import annotations

import base64
import contextlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .._math import normalize_rows_checked
from ._base import EmbeddingAPIError

#: A job stops for vectors that cannot be normalised only once at least this many inputs
#: were answered, more than half of them with such vectors.
_SYSTEMIC_MIN_PIECES = 32


@dataclass
class _Outcome:
    """What became of (part of) one planned request."""

    pieces: np.ndarray
    vectors: np.ndarray | None = None
    error: EmbeddingAPIError | None = None
    #: Inputs answered with vectors that cannot be normalised, and why (one reason
    #: per piece): not an error of the job, named when it ends (``_Assembler.refuse``).
    refused: tuple = ()


class _Stopped(Exception):
    """The job is being stopped by an error elsewhere: do not send."""


class _BadBody(Exception):
    """A 200 answer whose body could not be used (too slow, too large, cut off)."""

    def __init__(self, headers, message):
        super().__init__(message)
        self.headers = headers
        self.message = message


class _RequestFailed(Exception):
    """One HTTP request failed for good; carries what the caller needs to decide."""

    def __init__(self, status, message, too_large=False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.too_large = too_large


class _Malformed(_RequestFailed):
    """An answer that is not what was asked for (not JSON, bad indices, no vectors)."""

    def __init__(self, message):
        super().__init__(None, message)


class _RowsRefused(_Malformed):
    """An answer whose vectors for some inputs cannot be normalised; the rest are good.

    ``vectors`` holds every row in input order (unit rows, zeros where refused);
    ``refused`` maps each refused input's position to the reason. Caught as a
    whole-answer failure by a caller that does not look inside (it then loses the
    good rows, never returns a bad one).
    """

    def __init__(self, vectors, refused):
        counts = Counter(refused.values())
        reasons = "; ".join(f"{why}: {counts[why]}" for why in sorted(counts))
        super().__init__(
            f"the server returned {len(refused)} vector(s) that cannot be normalised ({reasons})"
        )
        self.vectors = vectors
        self.refused = refused

    def outcomes(self, pieces):
        """The good rows as one outcome, the refused ones as another."""
        bad = np.zeros(len(pieces), dtype=bool)
        bad[list(self.refused)] = True
        reasons = tuple(self.refused[i] for i in np.flatnonzero(bad))
        good = [_Outcome(pieces[~bad], vectors=self.vectors[~bad])] if not bad.all() else []
        return [*good, _Outcome(pieces[bad], refused=reasons)]


def _hand_on_paid(answers, n_texts, owners, piece_tokens, delivered, on_result):
    """Hand on every text the ended requests answered in full, less ``delivered``.

    ``answers``: each ended request's outcomes (or the exception it raised).

    The interrupted job's own assembler cannot be trusted: the interrupt may have
    fallen between taking a future and adding its vectors, or half-way through adding
    them. A fresh one, fed every answer, is. A failing store is not the error to see
    (the interrupt is): what it could not keep is lost, like a crash's.
    """
    assembler = _Assembler(n_texts, owners, piece_tokens, None)
    with contextlib.suppress(Exception):
        for outcomes in answers:
            if isinstance(outcomes, BaseException):
                continue
            for outcome in outcomes:
                if outcome.error is None and not outcome.refused:
                    assembler.add(outcome.pieces, outcome.vectors)
        if assembler.completed:
            complete = np.concatenate(assembler.completed)
            complete = complete[~delivered[complete]]
            if len(complete):
                on_result(complete, assembler.out[complete])


class _Assembler:
    """Gathers piece vectors into one vector per text, handing each text on when complete.

    Pieces arrive as unit rows (:meth:`OpenAIBackend._decode_body`): a whole text's row
    is kept as it is; a chunked text's row is the mean of its chunks' unit rows,
    weighted by their tokens and normalised again, so that no chunk outweighs another
    by its magnitude on the wire.
    """

    def __init__(self, n_texts, owners, piece_tokens, on_result):
        self.owners = owners
        self.weights = piece_tokens.astype(np.float32)
        self.missing = np.bincount(owners, minlength=n_texts)
        self.chunked = self.missing > 1
        self.on_result = on_result
        self.out = None
        self.n_texts = n_texts
        self.completed = []  # arrays of texts completed, not yet handed on
        self.n_received = 0  # pieces answered, good or refused
        self.refused = {}  # piece -> why its vector cannot be used
        self.stopped = False

    def refuse(self, pieces, reasons):
        """Record pieces whose vectors cannot be normalised; their texts never complete.

        Returns an error that stops the job when most of what was answered so far (at
        least ``_SYSTEMIC_MIN_PIECES`` pieces) is refused: the server, not the texts, is
        then at fault, and sending the rest would be paying for nothing. ``None``
        otherwise: the job goes on, and :meth:`refused_error` names them at its end.
        """
        self.n_received += len(pieces)
        self.refused.update(zip(pieces.tolist(), reasons, strict=True))
        if (
            self.stopped
            or self.n_received < _SYSTEMIC_MIN_PIECES
            or 2 * len(self.refused) <= self.n_received
        ):
            return None
        self.stopped = True
        return self.refused_error(
            f"; {len(self.refused)} of the {self.n_received} inputs answered so far: the "
            "server seems broken, so the job was stopped"
        )

    def refused_error(self, note=""):
        """The error naming every piece refused (the job maps them to its texts)."""
        counts = Counter(self.refused.values())
        reasons = "; ".join(f"{why}: {counts[why]}" for why in sorted(counts))
        message = (
            f"The embeddings API failed (malformed answer): the server returned "
            f"{len(self.refused)} vector(s) that cannot be normalised ({reasons}){note}"
        )
        return EmbeddingAPIError(message, rows=sorted(self.refused), api_message=reasons)

    def add(self, pieces, vectors):
        """Take the vectors of ``pieces``; texts they complete wait for :meth:`flush`.

        A chunked text whose chunks average to no direction (they cancel out) is
        refused like a vector that cannot be normalised.

        Raises
        ------
        ValueError
            If ``vectors`` are not as wide as the rows already taken (never broadcast).
        """
        if self.out is None:
            self.out = np.zeros((self.n_texts, vectors.shape[1]), dtype=np.float32)
        elif vectors.ndim != 2 or vectors.shape[1] != self.out.shape[1]:
            raise ValueError(
                f"vectors of shape {vectors.shape} cannot join rows of width {self.out.shape[1]}"
            )
        self.n_received += len(pieces)
        owners = self.owners[pieces]
        whole = ~self.chunked[owners]
        self.out[owners[whole]] = vectors[whole]
        np.add.at(self.out, owners[~whole], vectors[~whole] * self.weights[pieces[~whole], None])
        np.subtract.at(self.missing, owners, 1)
        complete = np.unique(owners[self.missing[owners] == 0])
        means = complete[self.chunked[complete]]
        if len(means):
            self.out[means], refused = normalize_rows_checked(self.out[means])
            if refused:
                # Chunks that cancel out: the text has no direction; its pieces are named
                # at the end like refused vectors.
                bad = means[list(refused)]
                for piece in np.flatnonzero(np.isin(self.owners, bad)).tolist():
                    self.refused[piece] = "chunks averaging to a vector of no direction"
                complete = np.setdiff1d(complete, bad)
        if len(complete):
            self.completed.append(complete)

    def flush(self):
        """Hand the texts completed since the last flush to ``on_result``; return how many."""
        if not self.completed:
            return 0
        complete, self.completed = np.concatenate(self.completed), []
        if self.on_result is not None:
            self.on_result(complete, self.out[complete])
        return len(complete)

    def result(self):
        return self.out


def _index_problem(order, n_inputs):
    """What is wrong with an answer's ``index`` values; "" when they are 0..n-1, once each."""
    for index in order:
        if type(index) is not int:  # 2.5, "1", True: never rounded or converted
            return f"got index {index!r}, which is not an integer"
    counts = Counter(order)
    problems = []
    for what, values in (
        ("repeated", [i for i, count in counts.items() if count > 1]),
        ("out of range", [i for i in counts if not 0 <= i < n_inputs]),
        ("missing", [i for i in range(n_inputs) if i not in counts]),
    ):
        if values:
            shown = ", ".join(str(i) for i in sorted(values)[:5])
            problems.append(f"index {shown}{', ...' if len(values) > 5 else ''} {what}")
    return "; ".join(problems)


def _wire_matrix(rows):
    """An answer's vectors as one 2-D array: float32 from base64, float64 from numbers.

    JSON numbers are kept in float64, so that values beyond float32's range are
    normalised instead of becoming infinities.
    """
    try:
        if all(isinstance(row, str) for row in rows):
            vectors = np.stack(
                [np.frombuffer(base64.b64decode(row, validate=True), dtype="<f4") for row in rows]
            )
        else:
            vectors = np.asarray(rows)
            if vectors.dtype.kind not in "iuf":
                raise TypeError("the embeddings are not lists of numbers")
            vectors = vectors.astype(np.float64)
    except (ValueError, TypeError) as error:
        raise _Malformed(f"malformed response ({error})") from None
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise _Malformed(
            "malformed response: the embeddings are not non-empty vectors of one length "
            f"(shape {vectors.shape})",
        )
    return vectors
