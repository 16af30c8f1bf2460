"""The one runner of the Job command lines (training, drift): flags, the result file, the one-line error, SIGTERM.

:meth:`JobCli.main` returns the exit code (it never raises ``SystemExit``):

- 0: the work produced its result document: written to ``--result-file`` (when given; the Jobs use
  ``/dev/termination-log``) and printed on stdout;
- 1: the work failed: the failure document (``error``, and ``run_id`` once the work started an MLflow run)
  in the result file, and as the last line on stderr ``<prefix>error: <reason>``;
  ``$VISIONOPS_DEBUG`` prints the traceback before it;
- 2: bad flags or an unreadable configuration: that one line, no result file;
- 143: SIGTERM (the Pod is being deleted): the work stops where it is (its ``finally`` blocks run), and it ends
  as a failure with the reason ``terminated by SIGTERM``; 130 likewise for Ctrl-C (``interrupted``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from visionops.contract import (
    DEBUG_ENV,
    IDENTITY_ENV,
    RESULT_FILE_ENV,
    TERMINATION_LOG,
    Document,
    DriftResult,
    TrainingResult,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
REASON_LIMIT = 1000  # characters of the one-line reason


class FlagError(Exception):
    """Flags that cannot be used (together): exit 2."""


class Terminated(BaseException):
    """SIGTERM arrived. A ``BaseException``, so that the work's ``except Exception`` does not swallow it."""


@dataclass
class Attempt:
    """What the work tells the runner for its failure document: the MLflow run, once it started one."""

    run_id: str | None = None


Work = Callable[[argparse.Namespace, Attempt], Mapping[str, Any] | Document]


def one_line(error: BaseException, known: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError),
             ) -> str:
    """The reason for the user: the message of a ``known`` error as it is, others prefixed with their type."""
    text = str(error).strip() or type(error).__name__
    if not isinstance(error, known):
        text = f"{type(error).__name__}: {text}"
    return " ".join(text.split())[:REASON_LIMIT]


def add_identity_flags(parser: argparse.ArgumentParser, kind: str) -> None:
    """``--namespace``, ``--name``, ``--uid`` of the custom resource (``kind``) the Job works for (env fallbacks)."""
    for key, env in IDENTITY_ENV.items():
        parser.add_argument(f"--{key}", default=os.environ.get(env) or None,
                            help=f"{kind} {key}, tagged on the MLflow run (${env})")


def _flag_error(message: str) -> NoReturn:
    raise FlagError(message)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (in the main thread; elsewhere it is left alone)."""
    def handler(signum: int, _frame: Any) -> None:
        raise Terminated(f"terminated by {signal.Signals(signum).name}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write(path: str | None, text: str) -> None:
    if path:
        Path(path).write_text(text)


@dataclass(frozen=True)
class JobCli:
    """One Job's command line: ``parser`` builds its flags (the runner adds ``--result-file``), ``work`` does
    the job and returns its result (a ``document`` or its fields), ``check`` refuses flags that do not go
    together (:class:`FlagError`), ``reason`` words a failure, ``prefix`` starts the error line."""

    parser: Callable[[], argparse.ArgumentParser]
    work: Work
    document: type[TrainingResult] | type[DriftResult]
    prefix: str = ""
    reason: Callable[[BaseException], str] = one_line
    check: Callable[[argparse.Namespace], None] | None = None

    def main(self, argv: list[str] | None = None) -> int:
        """Parse ``argv``, run the work, leave the result; return the exit code (module docstring)."""
        args = self._parse(argv)
        if isinstance(args, int):
            return args
        attempt = Attempt()
        try:
            with _sigterm_raises():
                found = self.work(args, attempt)
                document = found if isinstance(found, self.document) else self.document.from_dict(found, strict=True)
                text = document.to_json()
                _write(args.result_file, text)
        except Terminated as error:
            return self._fail(args, attempt, error, str(error), EXIT_TERMINATED)
        except KeyboardInterrupt as error:
            return self._fail(args, attempt, error, "interrupted", EXIT_INTERRUPTED)
        except Exception as error:
            return self._fail(args, attempt, error, self.reason(error), EXIT_FAILED)
        print(text, flush=True)
        return EXIT_OK

    def _parse(self, argv: list[str] | None) -> argparse.Namespace | int:
        """The flags, or the exit code when there are none to run with (bad flags: one line; ``--help``: 0)."""
        try:
            parser = self.parser()
        except (OSError, ValueError) as error:  # e.g. configs/*.yaml unreadable
            return self._usage(one_line(error))
        parser.add_argument("--result-file", default=os.environ.get(RESULT_FILE_ENV) or None,
                            help=f"write the result JSON here, e.g. {TERMINATION_LOG} (${RESULT_FILE_ENV})")
        parser.error = _flag_error  # type: ignore[method-assign]  # instead of the usage text and exit(2)
        try:
            args = parser.parse_args(argv)
            if self.check is not None:
                self.check(args)
        except FlagError as error:
            return self._usage(f"{error} (see {parser.prog} --help)")
        except SystemExit as done:  # --help
            return done.code if isinstance(done.code, int) else EXIT_USAGE
        return args

    def _usage(self, message: str) -> int:
        print(f"{self.prefix}error: {message}", file=sys.stderr, flush=True)
        return EXIT_USAGE

    def _fail(self, args: argparse.Namespace, attempt: Attempt, error: BaseException, reason: str, code: int) -> int:
        """Leave the failure document and the one line; return ``code``."""
        if os.environ.get(DEBUG_ENV):
            traceback.print_exception(error)
        text = self.document.failure(reason, attempt.run_id).to_json()
        try:
            _write(args.result_file, text)
        except OSError as unwritable:
            print(f"{self.prefix}cannot write the result file: {one_line(unwritable)}", file=sys.stderr)
        print(f"{self.prefix}error: {reason}", file=sys.stderr, flush=True)
        return code
