import pytest


@pytest.fixture
def restore_signals():
    """The training loop installs SIGTERM/SIGINT handlers for a graceful stop; put the test process's back."""
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
