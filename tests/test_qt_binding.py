"""The Qt binding must not corrupt reference counts under the engine's patterns.

PySide6 6.12.0 aborts the interpreter ("deallocating True/None") after a few
thousand cross-thread signal emissions carrying Python objects, and when
QRunnable subclasses are created in a loop; pyproject.toml excludes it.  This
test runs both patterns in a fresh interpreter so that a bad binding fails here,
loudly, instead of crashing the app.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_binding_survives_engine_patterns() -> None:
    code = textwrap.dedent("""
        from PySide6.QtCore import QCoreApplication, QObject, QRunnable, Signal
        app = QCoreApplication([])
        class S(QObject):
            s = Signal(int, object)
        class R(QRunnable):
            def run(self): pass
        got = []
        sig = S()
        sig.s.connect(lambda i, o: got.append(i))
        for i in range(200000):
            sig.s.emit(i, {"ok": True, "none": None})
        for i in range(100000):
            r = R(); r.setAutoDelete(False)
        print(len(got))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"QT_QPA_PLATFORM": "offscreen",
                                            **__import__("os").environ})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "200000"
