"""OpenAI embeddings through the Batch API: half the price, answered within 24 hours.

The job is planned like an online one (the same pieces and the same per-request limits,
one JSONL line per request), the lines are packed into as few batches as the per-batch
limits allow, and each batch is uploaded, created and polled. Output lines are parsed as
they are downloaded and handed to ``on_result`` at once, so they reach the cache before
anything else can fail. Lines that failed, expired or came back unusable (malformed
JSON, not an embeddings answer, no readable answer at all) are sent again in new
batches, a bounded number of times; a 4xx line is split in two each time, to narrow it
down to the inputs at fault.

Resume: every batch is written down, before it is created, in a small ledger (one per
vector space, kept in the job's cache by ``CacheStore.state``) as the digests of the
pieces each of its lines carries: never a text and never a key. A later job that needs
any of those pieces (a re-run after Ctrl-C or a crash) waits for the recorded batch
instead of paying for them again. The ledger is keyed by the vector space rather than by
the job, because a re-run only asks for the texts that are not cached yet, which is
another set of texts.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import threading
import time
from collections import Counter

import numpy as np

from .._cache import StateFile, cache_key, default_cache_dir
from .._models import MAX_INPUTS_PER_REQUEST, MAX_TOKENS_PER_REQUEST
from ._answers import _Assembler, _RequestFailed, _RowsRefused
from ._base import EmbeddingAPIError, RequestMeter
from ._http import transport_errors
from ._openai import TOKEN_MARGIN, OpenAIBackend
from ._planner import plan_requests
from ._progress import progress_bar
from ._retry import _RETRYABLE_STATUS, _api_message, _backoff, _retry_after

__all__ = ["OpenAIBatchBackend"]

logger = logging.getLogger("skembed")

BATCH_ENDPOINT = "/v1/embeddings"
#: The Batch API's documented limits per batch: 50,000 requests and 200 MB per input
#: file, and at most 50,000 embedding inputs across the requests of an embeddings batch.
MAX_REQUESTS_PER_BATCH = 50_000
MAX_INPUTS_PER_BATCH = 50_000
#: Under 200 MB however "MB" is read (10**6 or 2**20 bytes).
MAX_FILE_BYTES = 190_000_000
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: The failure code of a batch that would cross the model's limit of enqueued tokens.
_QUEUE_FULL = "token_limit_exceeded"
_LIMIT_IN_MESSAGE = re.compile(r"Limit:\s*([\d,]+)")
# (endpoint, organization, model) -> the enqueued-token limit learnt from a failure, for
# every later job of the process.
_learnt_limits = {}
_learnt_limits_lock = threading.Lock()
_DIGEST_BYTES = 16
#: The custom_id at the start of an output line, found even when the rest is cut off.
_CUSTOM_ID = re.compile(r'"custom_id"\s*:\s*"([^"\\]*)"')


class OpenAIBatchBackend(OpenAIBackend):
    """Embeds texts through the Batch API (``/v1/files`` + ``/v1/batches``).

    Takes :class:`OpenAIBackend`'s parameters (client, model, ``dimensions``,
    ``long_input``, ``batch_size`` as the most inputs per line...), and the vectors land
    in the same cache namespace: a batch and an online request return the same vector.

    Parameters
    ----------
    poll_interval : float
        Seconds between two looks at the batches in flight (the estimator's
        ``batch_poll_interval``).
    max_resubmits : int, default=2
        Times a failed or expired line is sent again, in a new batch.
    state_dir : str, default=None
        Directory of the resume ledgers. ``None``: in the cache of the job (a file
        under its directory, ``batch_jobs/``, or a key under its Redis prefix), and
        ``<default cache dir>/batch_jobs`` for a job without a cache.
    max_enqueued_tokens : int or None
        Most tokens of this model in batches not yet ended (the estimator's
        ``batch_max_enqueued_tokens``): larger jobs are submitted in waves, each after
        the previous one has ended. ``None``: learnt from the first batch that fails
        with ``token_limit_exceeded``.
    max_requests_per_batch, max_inputs_per_batch, max_file_bytes : int
        Per-batch limits (the API's by default; lower them to test the splitting).
    **online
        :class:`OpenAIBackend`'s parameters.

    Only ``max_resubmits``, ``state_dir`` and the per-batch limits have defaults: no
    estimator parameter sets them, so this is the one place they are written.
    """

    def __init__(
        self,
        *,
        poll_interval,
        max_enqueued_tokens,
        max_resubmits=2,
        state_dir=None,
        max_requests_per_batch=MAX_REQUESTS_PER_BATCH,
        max_inputs_per_batch=MAX_INPUTS_PER_BATCH,
        max_file_bytes=MAX_FILE_BYTES,
        **online,
    ):
        super().__init__(**online)
        if self.api_version:
            raise ValueError(
                "batch_api=True is not supported with Azure OpenAI (api_version is set): "
                "its batch deployments and file routes differ. Use batch_api=False."
            )
        self.poll_interval = poll_interval
        self.max_enqueued_tokens = max_enqueued_tokens
        self._queue = (self._endpoint, self.organization or "", self.model_name)
        self.max_resubmits = max_resubmits
        self.state_dir = state_dir
        self.max_requests_per_batch = max_requests_per_batch
        self.max_inputs_per_batch = max_inputs_per_batch
        self.max_file_bytes = max_file_bytes
        if online.get("usd_per_million_tokens") is None and self.usd_per_million_tokens:
            # The Batch API bills half the list price; a price given explicitly is the
            # user's own and is used as given.
            self.usd_per_million_tokens /= 2

    #: Its jobs outlive the process: the embedding job passes ``embed`` its cache
    #: (``store=``) to keep the resume ledger in.
    resumable = True

    def embed(self, texts, on_result=None, meter=None, store=None):
        """Embed ``texts`` (distinct, valid); see :class:`EmbeddingBackend`.

        ``meter``, a :class:`RequestMeter`, counts each line (a request) of the batches
        this call submits, and stops the job before one would cross its limit.
        ``store``, the job's cache (or ``None``), keeps the resume ledger.
        """
        pieces = self._pieces(texts)
        piece_tokens = np.array([p.n_tokens for p in pieces], dtype=np.int64)
        owners = np.array([p.owner for p in pieces], dtype=np.intp)
        self.client()  # no key: fail before anything is uploaded
        assembler = _Assembler(len(texts), owners, piece_tokens, on_result)
        meter = RequestMeter() if meter is None else meter
        job = _BatchJob(self, pieces, assembler, meter, self._ledger_place(store))
        with progress_bar(len(texts), self.progress, desc="Embedding", leave=False) as bar:
            job.bar = bar
            try:
                job.run()
            except _RequestFailed as failure:
                if failure.status in (401, 403):
                    raise self._error(failure, ()) from None
                raise EmbeddingAPIError(
                    f"The Batch API refused a request (HTTP {failure.status}): {failure.message}",
                    status_code=failure.status,
                    api_message=failure.message,
                ) from None
        if job.given_up:
            raise job.error()
        return job.assembler.result()

    def enqueued_token_limit(self):
        """Most tokens this model may have in unfinished batches, or ``None`` if unknown."""
        with _learnt_limits_lock:
            learnt = _learnt_limits.get(self._queue)
        known = [v for v in (self.max_enqueued_tokens, learnt) if v is not None]
        return min(known) if known else None

    def learn_enqueued_token_limit(self, limit):
        """Keep ``limit`` (learnt from a failure) for every later batch of the process."""
        with _learnt_limits_lock:
            _learnt_limits[self._queue] = min(limit, _learnt_limits.get(self._queue, limit))
        logger.info("enqueued-token limit of %s: %d tokens", self.model_name, limit)

    # -- control-plane calls, retried like embeddings requests ---------------------------

    def _call(self, function, *args, **kwargs):
        import openai

        attempt = 0
        while True:
            try:
                return function(*args, **kwargs)
            except openai.APIStatusError as error:
                status, message = error.status_code, self._scrub(_api_message(error))
                if status not in _RETRYABLE_STATUS and status < 500:
                    raise _RequestFailed(status, message) from None
                delay = _retry_after(error.response.headers)
            except openai.APIConnectionError as error:
                status, message = None, self._scrub(str(error) or type(error).__name__)
                delay = None
            attempt += 1
            if attempt > self.max_retries:
                raise EmbeddingAPIError(
                    f"The Batch API failed ({status or 'no answer'}) after "
                    f"{self.max_retries} retries: {message}",
                    status_code=status,
                    api_message=message,
                )
            time.sleep(delay if delay is not None else _backoff(attempt - 1))

    def _create_batch(self, file_id):
        """Create the batch of an uploaded file, never twice."""
        client = self.client()

        def attempt():
            # A batch made from this file by an earlier attempt (its answer lost, or the
            # process stopped before the ledger was updated) is among the newest ones.
            for batch in client.batches.list(limit=100).data:
                if batch.input_file_id == file_id:
                    return batch
            return client.batches.create(
                input_file_id=file_id,
                endpoint=BATCH_ENDPOINT,
                completion_window="24h",
                metadata={"created_by": "skembed"},
            )

        return self._call(attempt)

    def _ledger_place(self, store):
        """Where this vector space's resume ledger lives: with the vectors it leads to."""
        digest = hashlib.blake2b(self.cache_namespace.encode(), digest_size=16).hexdigest()
        name = f"{digest}.json"
        if self.state_dir is not None:
            return StateFile(os.path.join(self.state_dir, name))
        if store is not None:
            return store.state(f"batch_jobs/{name}")
        return StateFile(os.path.join(default_cache_dir(), "batch_jobs", name))

    def _delete_files(self, *file_ids):
        """Remove a finished batch's files (best effort: they expire anyway)."""
        for file_id in filter(None, file_ids):
            try:
                self._call(self.client().files.delete, file_id)
            except (_RequestFailed, EmbeddingAPIError):
                logger.debug("could not delete batch file %s", file_id)


class _BatchJob:
    """One ``embed`` call: distinct pieces in, vectors out through the assembler."""

    def __init__(self, backend, pieces, assembler, meter, ledger_place):
        self.backend = backend
        self.assembler = assembler
        self.meter = meter
        self.metered = set()  # input files of the batches this job submitted (and reserved)
        self.bar = None
        namespace = backend.cache_namespace
        # A piece is known by the digest of its text in the vector space: the same
        # digest in any job means the same vector.
        self.positions, self.text, self.tokens = {}, {}, {}
        for position, piece in enumerate(pieces):
            digest = cache_key(namespace, piece.text)[:_DIGEST_BYTES].hex()
            if digest not in self.positions:
                self.positions[digest] = []
                self.text[digest], self.tokens[digest] = piece.text, piece.n_tokens
            self.positions[digest].append(position)
        self.pending = dict.fromkeys(self.positions)  # ordered set: not delivered yet
        self.failures = {}  # digest -> (status, message) of its last failure
        self.attempts = Counter()  # digest -> failed attempts
        self.line_size = Counter()  # digest -> inputs of the line it last failed in
        self.given_up = set()
        self.ledger = _Ledger(ledger_place)

    # -- the rounds ----------------------------------------------------------------------

    def run(self):
        in_flight = self.ledger.adopt(self.pending)
        if in_flight:
            logger.info("resuming %d recorded batch(es)", len(in_flight))
        while True:
            covered = {d for entry in in_flight for line in entry["lines"].values() for d in line}
            todo = [d for d in self.pending if d not in covered and d not in self.given_up]
            # A wave: what fits under the model's enqueued-token limit, beside the batches
            # already in flight; the rest waits for the next round.
            in_flight += self._submit(todo, in_flight)
            self.queue_was_full = False
            self._wait(in_flight)
            in_flight = []
            if self.queue_was_full:
                # Held by batches of other jobs: "try again once some ... have completed".
                time.sleep(self.backend.poll_interval)
            self.given_up = {
                d for d in self.pending if self.attempts[d] > self.backend.max_resubmits
            }
            if len(self.given_up) == len(self.pending):
                return

    def _lines(self, digests):
        """Group digests into request lines within the per-request limits."""
        backend = self.backend
        base = min(backend.batch_size, MAX_INPUTS_PER_REQUEST)
        groups = {}
        for digest in digests:
            # A line refused as invalid (4xx) is split, to narrow down the inputs at fault.
            status = self.failures.get(digest, (None, ""))[0]
            narrow = status is not None and 400 <= status < 500
            size = max(1, self.line_size[digest] // 2) if narrow else base
            groups.setdefault(size, []).append(digest)
        lines = []
        for size, group in groups.items():
            tokens = np.array([self.tokens[d] for d in group], dtype=np.int64)
            for request in plan_requests(
                tokens,
                max_inputs=size,
                max_tokens=int(MAX_TOKENS_PER_REQUEST * TOKEN_MARGIN),
            ):
                lines.append([group[i] for i in request])
        return lines

    def _body(self, line):
        return self.backend._request_body([self.text[d] for d in line])

    def _submit(self, digests, in_flight=()):
        """Upload and create the batches for ``digests`` that fit under the enqueued-token
        limit beside ``in_flight``; return their ledger entries."""
        if not digests:
            return []
        limit = self.backend.enqueued_token_limit()
        room = None if limit is None else limit - sum(map(self._entry_tokens, in_flight))
        entries = []
        for chunk in self._chunks(digests, limit):
            tokens = sum(self._line_tokens(line) for _, line, _ in chunk)
            if room is not None and tokens > room and (entries or in_flight):
                break  # the next wave
            entries.append(self._create(chunk))
            room = None if room is None else room - tokens
        return entries

    def _chunks(self, digests, limit):
        """The request lines of ``digests`` packed into batches within the per-batch
        limits, and each within ``limit`` tokens when it is known."""
        backend = self.backend
        chunks, chunk, size, n_inputs, tokens = [], [], 0, 0, 0
        for number, line in enumerate(self._lines(digests)):
            custom_id = f"skembed-{number}"  # unique in the job, so in each of its batches
            record = {
                "custom_id": custom_id,
                "method": "POST",
                "url": BATCH_ENDPOINT,
                "body": self._body(line),
            }
            raw = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
            line_tokens = self._line_tokens(line)
            if chunk and (
                len(chunk) >= backend.max_requests_per_batch
                or n_inputs + len(line) > backend.max_inputs_per_batch
                or size + len(raw) > backend.max_file_bytes
                or (limit is not None and tokens + line_tokens > limit)
            ):
                chunks.append(chunk)
                chunk, size, n_inputs, tokens = [], 0, 0, 0
            chunk.append((custom_id, line, raw))
            size += len(raw)
            n_inputs += len(line)
            tokens += line_tokens
        chunks.append(chunk)
        return chunks

    def _create(self, chunk):
        backend = self.backend
        reserved = []
        try:
            for _, line, _ in chunk:
                self.meter.reserve(self._line_tokens(line))
                reserved.append(line)
        except BaseException:
            for line in reserved:
                self.meter.settle(self._line_tokens(line), billed=False)
            raise
        data = b"".join(raw for _, _, raw in chunk)
        upload = backend._call(
            backend.client().files.create,
            file=("skembed-batch.jsonl", io.BytesIO(data)),
            purpose="batch",
        )
        entry = {"file": upload.id, "batch": None, "lines": {c: line for c, line, _ in chunk}}
        self.metered.add(upload.id)
        # Written down before the batch exists: a stop from here on resumes, not repays.
        self.ledger.add(entry)
        batch = backend._create_batch(upload.id)
        entry["batch"] = batch.id
        self.ledger.update(entry)
        logger.info(
            "submitted batch %s: %d requests, %d inputs",
            batch.id,
            len(chunk),
            sum(len(line) for _, line, _ in chunk),
        )
        return entry

    def _wait(self, in_flight):
        """Poll until every batch in flight has ended, consuming each as it ends."""
        backend = self.backend
        client = backend.client()
        while in_flight:
            for entry in list(in_flight):
                if entry["batch"] is None:  # stopped between upload and create
                    entry["batch"] = backend._create_batch(entry["file"]).id
                    self.ledger.update(entry)
                try:
                    batch = backend._call(client.batches.retrieve, entry["batch"])
                except _RequestFailed as failure:
                    if failure.status != 404:
                        raise backend._error(failure, []) from None
                    batch = None  # gone (another account, or purged): send again
                if batch is None or batch.status in _TERMINAL:
                    self._consume(entry, batch)
                    self.ledger.remove(entry)
                    if batch is not None:
                        backend._delete_files(
                            batch.input_file_id, batch.output_file_id, batch.error_file_id
                        )
                    in_flight.remove(entry)
            if in_flight:
                time.sleep(backend.poll_interval)

    # -- results -------------------------------------------------------------------------

    def _consume(self, entry, batch):
        lines = entry["lines"]
        answered = set()
        if batch is not None and batch.status == "failed":
            errors = batch.errors.data if batch.errors and batch.errors.data else []
            message = "; ".join(e.message or e.code or "" for e in errors) or "batch failed"
            if any(e.code == _QUEUE_FULL for e in errors):
                self._queue_full(entry, message)
                return
            for line in lines.values():
                self._settle(entry, line, billed=False)
                self._fail(line, None, f"the batch {batch.id} failed validation: {message}")
            return
        unreadable = 0
        if batch is not None:
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    unreadable += self._read(file_id, entry, answered)
        for custom_id, line in lines.items():
            if custom_id in answered:
                continue
            if unreadable:
                # Its answer may be among the lines that could not be read: perhaps billed.
                self._settle(entry, line, billed=None)
                self._fail(
                    line,
                    None,
                    f"no readable result for this request ({unreadable} "
                    "malformed line(s) in the batch's files)",
                )
            else:
                status = batch.status if batch is not None else "not found"
                self._settle(entry, line, billed=False)
                self._fail(line, None, f"no result for this request (batch {status})")

    def _read(self, file_id, entry, answered):
        """Parse an output or error file line by line; return how many lines were unreadable.

        Each answered line is acted on as it is parsed and its custom_id added to
        ``answered``; a download cut off half way is read again from the start, skipping
        the lines already taken. A file that is gone (404) answers nothing more: its
        lines are sent again.
        """
        import openai

        backend = self.backend
        client = backend.client()
        unreadable = set()  # numbers of the lines that could not be read, over all attempts
        attempt = 0
        while True:
            try:
                with client.files.with_streaming_response.content(file_id) as response:
                    for number, raw in enumerate(response.iter_lines()):
                        if not self._take(raw, entry, answered):
                            unreadable.add(number)
                return len(unreadable)
            except openai.APIStatusError as error:
                if error.status_code == 404:
                    logger.warning(
                        "the batch file %s is gone; its requests are sent again", file_id
                    )
                    return len(unreadable)
                retryable = error.status_code in _RETRYABLE_STATUS or error.status_code >= 500
                failure = (error.status_code, backend._scrub(_api_message(error)))
                if not retryable:
                    raise _RequestFailed(*failure) from None
            except transport_errors() as error:
                failure = (None, backend._scrub(str(error) or type(error).__name__))
            attempt += 1
            if attempt > backend.max_retries:
                raise EmbeddingAPIError(
                    f"Could not download the batch file {file_id} after {backend.max_retries} "
                    f"retries: {failure[1]}",
                    status_code=failure[0],
                    api_message=failure[1],
                )
            time.sleep(_backoff(attempt - 1))

    def _take(self, raw, entry, answered):
        """Act on one line of an output or error file; False if it could not be read.

        A line is never an error of the job: one that is not valid JSON, whose body is not
        an embeddings answer, or whose vectors cannot be used fails its request (sent
        again, a bounded number of times, like any failed line). A line whose request
        cannot be told (no custom_id, or one of no request of the batch) is not acted on;
        the requests it leaves without an answer fail when the files have been read.
        """
        if not raw.strip():
            return True
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict):
            custom_id = record.get("custom_id")
        else:
            # Cut or garbled: its custom_id, if the start of the line survived, still
            # tells whose answer was lost (the API writes it before the response).
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            found = _CUSTOM_ID.search(text)
            custom_id = found.group(1) if found else None
        line = entry["lines"].get(custom_id) if isinstance(custom_id, str) else None
        if line is None:
            return False
        if custom_id in answered:  # taken before this download was cut, or a duplicate
            return isinstance(record, dict)
        answered.add(custom_id)
        if not isinstance(record, dict):
            self._settle(entry, line, billed=None)  # it was answered: perhaps billed
            self._fail(line, None, "its output line was malformed (not valid JSON)")
            return False
        reply = _object(record.get("response"))
        status = reply.get("status_code")
        if status == 200:
            self._settle(entry, line, billed=True)
            self._take_vectors(line, reply.get("body"))
            return True
        self._settle(entry, line, billed=False)
        error = _object(record.get("error")) or _object(_object(reply.get("body")).get("error"))
        message = error.get("message") or error.get("code") or "request failed"
        status = status if isinstance(status, int) and not isinstance(status, bool) else None
        self._fail(line, status, self.backend._scrub(str(message)))
        return True

    def _take_vectors(self, line, body):
        """Deliver the vectors of an answered line; fail the inputs whose rows are unusable."""
        try:
            vectors = self.backend._decode_body(body, len(line))
        except _RowsRefused as refused:
            # Paid for: keep the good rows; resubmit only the refused ones.
            bad = set(refused.refused)
            good = [i for i in range(len(line)) if i not in bad]
            if good:
                self._deliver([line[i] for i in good], refused.vectors[good])
            self._fail([line[i] for i in sorted(bad)], None, refused.message)
            return
        except _RequestFailed as failure:
            self._fail(line, None, failure.message)
            return
        self._deliver(line, vectors)

    def _queue_full(self, entry, message):
        """A batch over the model's enqueued-token limit: learn the limit, send it again.

        The limit is the one the message states, else half the batch (never below its
        largest line). A batch that was already within what is known (the queue is held
        by other jobs' batches), or of one line (over the limit on its own), counts as a
        failed attempt of its lines, so a queue that never frees ends in an error naming the
        API's message.
        """
        lines = list(entry["lines"].values())
        for line in lines:
            self._settle(entry, line, billed=False)
        tokens = self._entry_tokens(entry)
        stated = _LIMIT_IN_MESSAGE.search(message)
        largest = max(map(self._line_tokens, lines))
        limit = int(stated.group(1).replace(",", "")) if stated else max(largest, tokens // 2)
        known = self.backend.enqueued_token_limit()
        self.backend.learn_enqueued_token_limit(limit)
        if len(lines) == 1 or (known is not None and tokens <= known):
            self.queue_was_full = True
            for line in lines:
                self._fail(line, None, f"the batch queue is full: {message}")

    def _entry_tokens(self, entry):
        # A resumed entry may carry pieces of another job: those are not counted.
        return sum(self.tokens.get(d, 0) for line in entry["lines"].values() for d in line)

    def _line_tokens(self, line):
        return sum(self.tokens[d] for d in line)

    def _settle(self, entry, line, billed):
        # Only this job's batches were reserved; a resumed one was paid for earlier.
        if entry["file"] in self.metered:
            self.meter.settle(self._line_tokens(line), billed=billed)

    def _deliver(self, line, vectors):
        positions, rows = [], []
        for digest, vector in zip(line, vectors, strict=True):
            if digest in self.pending:
                del self.pending[digest]
                positions += self.positions[digest]
                rows += [vector] * len(self.positions[digest])
        if positions:
            self.assembler.add(np.array(positions), np.stack(rows))
            self.bar.update(self.assembler.flush())  # cached at once

    def _fail(self, line, status, message):
        for digest in line:
            if digest in self.pending:
                self.attempts[digest] += 1
                self.failures[digest] = (status, message)
                self.line_size[digest] = len(line)

    def error(self):
        """The error naming the texts whose requests kept failing, and why."""
        owners = self.assembler.owners
        given_up = [d for d in self.pending if d in self.given_up]
        rows = np.unique(owners[[p for d in given_up for p in self.positions[d]]])
        # The commonest reason first, then up to three others (ties: the first seen).
        ranked = Counter(self.failures[d] for d in given_up).most_common()
        (status, message), _ = ranked[0]
        attempts = self.backend.max_resubmits + 1
        what = f"HTTP {status}" if status else "no answer"
        others = "".join(
            f"; for {n} other input(s), " + (f"HTTP {s}: " if s else "") + m
            for (s, m), n in ranked[1:4]
        )
        return EmbeddingAPIError(
            f"The Batch API failed {len(rows)} text(s) in {attempts} attempts ({what}): "
            f"{message}{others}",
            rows=rows,
            status_code=status,
            api_message=message,
        )


def _object(value):
    """``value`` if it is a JSON object, else an empty one (a malformed line's parts)."""
    return value if isinstance(value, dict) else {}


class _Ledger:
    """The batches submitted in one vector space, kept for resuming.

    Each entry: the input file id, the batch id (``None`` until created) and, per
    custom_id, the digests of the pieces of that line. Every change re-reads the ledger
    and replaces it whole, atomically (a :class:`~skembed._cache.StateBlob`), so a crash
    never leaves half a ledger.
    """

    def __init__(self, place):
        self.place = place

    def _load(self):
        data = self.place.read()
        if data is None:
            return []
        try:
            return json.loads(data.decode("utf-8"))["batches"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring an unreadable batch ledger %s", self.place.location)
            return []

    def _save(self, entries):
        # One dumps call: the C encoder, where json.dump streams in Python. The record
        # of a paid batch must survive a crash: the place writes it durably.
        self.place.write(json.dumps({"version": 1, "batches": entries}).encode("utf-8"))

    def adopt(self, wanted):
        """The recorded entries that carry any of the ``wanted`` digests."""
        return [
            entry
            for entry in self._load()
            if any(d in wanted for line in entry["lines"].values() for d in line)
        ]

    def add(self, entry):
        self._save([*self._load(), entry])

    def update(self, entry):
        self._save([entry if e["file"] == entry["file"] else e for e in self._load()])

    def remove(self, entry):
        entries = [e for e in self._load() if e["file"] != entry["file"]]
        if entries:
            self._save(entries)
        else:
            self.place.delete()
