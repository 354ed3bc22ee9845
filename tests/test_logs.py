"""``setup_logging`` (pure logic): procedge's own DEBUG lines pass, the chatty libraries' do
not, and a WARNING level still holds them back."""

from __future__ import annotations

import logging

from edge_runtime.logs import AUDIT, CHATTY, setup_logging


def test_debug_keeps_procedge_lines_and_quiets_library_internals(capsys):
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(n) for n in (*CHATTY, AUDIT))]
    handlers, levels = list(root.handlers), [lg.level for lg in loggers]
    try:
        setup_logging("DEBUG")
        logging.getLogger("procedge.train").debug("epoch 1")
        logging.getLogger("PIL.PngImagePlugin").debug("STREAM b'IDAT'")
        logging.getLogger("h5py._conv").info("converter ready")
        setup_logging("WARNING")
        logging.getLogger("PIL.Image").info("not at WARNING")
        err = capsys.readouterr().err
    finally:  # this pytest process's logging as it was: no handler or level left behind
        root.handlers[:] = handlers
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    assert "epoch 1" in err and "converter ready" in err
    assert "IDAT" not in err and "not at WARNING" not in err
