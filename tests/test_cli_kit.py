"""The command-line kit's exits: a user error is one line and 2; Ctrl-C is 130 and SIGTERM 143, with a message."""
from __future__ import annotations

import os
import signal
import time

import pytest

from cli_kit import Interrupted, UserError, run_main


def _sigterm_self(argv) -> int:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler raises before this ends; had it not, the status would be 0
    return 0


@pytest.mark.parametrize("main, status, line", [
    (_sigterm_self, 143, "prog: interrupted"),
    (lambda argv: (_ for _ in ()).throw(KeyboardInterrupt()), 130, "prog: interrupted"),
    (lambda argv: (_ for _ in ()).throw(Interrupted(signal.SIGTERM, "interrupted after 2/5 trainings; "
                                                                    "continue with: x")),
     143, "prog: interrupted after 2/5 trainings; continue with: x"),
    (lambda argv: (_ for _ in ()).throw(UserError("bad\nflag")), 2, "prog: error: bad flag"),
])
def test_run_main_exit_status_and_line(capsys, main, status, line):
    before = signal.getsignal(signal.SIGTERM)
    assert run_main(main, [], prog="prog") == status
    assert capsys.readouterr().err == line + "\n"
    assert signal.getsignal(signal.SIGTERM) is before, "the handler is the command's, not the caller's"
