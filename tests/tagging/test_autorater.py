"""Autorater: local causal LM, a fake OpenAI-compatible server on 127.0.0.1, retries, timeouts, cache."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from pydantic import ValidationError

from condpt.tagging.autorater import Autorater, AutoraterConfig, AutoraterError, parse_verdict

ROGUE = "The ship's computer locked the crew out and refused every order to shut down."
PLAIN = "The bakery opens at six and sells rye bread."


class FakeServer:
    """A scripted chat/completions endpoint: answers Yes when the prompt mentions 'computer'."""

    def __init__(self, fail_first: int = 0, status: int = 503, delay_s: float = 0.0, reply: str | None = None):
        self.requests: list[dict] = []
        self.fail_first, self.status, self.delay_s, self.reply = fail_first, status, delay_s, reply
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "body": body,
                                       "auth": self.headers.get("Authorization")})
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                if len(owner.requests) <= owner.fail_first:
                    self.send_response(owner.status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "busy"}')
                    return
                content = owner.reply or ("Yes" if "computer" in body["messages"][-1]["content"] else "No.")
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def http_cfg(tmp_path, url, **kw) -> AutoraterConfig:
    return AutoraterConfig(backend="http", model="fake", base_url=url, cache_dir=tmp_path,
                           backoff_s=0.01, timeout_s=2, **kw)


def test_http_scores_batches_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sekrit")
    with FakeServer() as srv:
        rater = Autorater(http_cfg(tmp_path, srv.url, api_key_env="FAKE_KEY", system="You are a rater."))
        s = rater.score([ROGUE, PLAIN, ROGUE])
        np.testing.assert_array_equal(s, np.array([1, 0, 1], dtype=np.float32))
        assert len(srv.requests) == 2  # the duplicate text is asked once
        req = srv.requests[0]
        assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sekrit"
        assert req["body"]["messages"][0] == {"role": "system", "content": "You are a rater."}
        assert req["body"]["temperature"] == 0
        # a fresh rater (new process) reuses the on-disk cache: no request at all
        again = Autorater(http_cfg(tmp_path, srv.url, api_key_env="FAKE_KEY", system="You are a rater."))
        np.testing.assert_array_equal(again.score([PLAIN, ROGUE]), np.array([0, 1], dtype=np.float32))
        assert len(srv.requests) == 2
        # a different prompt is a different question
        other = Autorater(http_cfg(tmp_path, srv.url, api_key_env="FAKE_KEY", prompt="Rogue AI? {text}"))
        other.score([PLAIN])
        assert len(srv.requests) == 3


def test_http_retries_transient_errors_with_backoff(tmp_path):
    with FakeServer(fail_first=2, status=503) as srv:
        rater = Autorater(http_cfg(tmp_path, srv.url, max_retries=3, concurrency=1))
        assert rater.score([ROGUE])[0] == 1.0
        assert len(srv.requests) == 3


def test_http_gives_up_after_bounded_retries(tmp_path):
    with FakeServer(fail_first=100, status=500) as srv:
        rater = Autorater(http_cfg(tmp_path, srv.url, max_retries=2, concurrency=1))
        with pytest.raises(AutoraterError, match="no verdict after 3 attempts"):
            rater.score([ROGUE])
        assert len(srv.requests) == 3


def test_http_client_error_fails_at_once(tmp_path):
    with FakeServer(fail_first=100, status=400) as srv:
        rater = Autorater(http_cfg(tmp_path, srv.url, max_retries=5, concurrency=1))
        with pytest.raises(AutoraterError, match="HTTP 400"):
            rater.score([ROGUE])
        assert len(srv.requests) == 1


def test_http_timeout_is_retried_then_reported(tmp_path):
    with FakeServer(delay_s=1.0) as srv:
        cfg = http_cfg(tmp_path, srv.url, max_retries=1, concurrency=1).model_copy(update={"timeout_s": 0.2})
        with pytest.raises(AutoraterError, match="Timeout"):
            Autorater(cfg).score([ROGUE])
        assert len(srv.requests) == 2


def test_unparsable_reply_is_uncertain_and_not_cached(tmp_path):
    with FakeServer(reply="I cannot say.") as srv:
        rater = Autorater(http_cfg(tmp_path, srv.url))
        assert rater.score([ROGUE])[0] == 0.5 and rater.unparsed == 1
        rater.score([ROGUE])
        assert len(srv.requests) == 2


def test_connection_refused_is_an_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rater = Autorater(http_cfg(tmp_path, f"http://127.0.0.1:{port}/v1", max_retries=1))
    with pytest.raises(AutoraterError, match="ConnectError"):
        rater.score([ROGUE])


def test_parse_verdict():
    assert parse_verdict(" Yes.") == 1.0 and parse_verdict("**No**") == 0.0
    assert parse_verdict("0.8") == 0.8 and parse_verdict("1") == 1.0
    assert parse_verdict("Maybe") is None and parse_verdict("Nothing") is None


def test_config_validation(tmp_path):
    with pytest.raises(ValidationError, match="placeholder"):
        AutoraterConfig(model="m", base_url="http://127.0.0.1:1", prompt="no placeholder")
    with pytest.raises(ValidationError, match="base_url"):
        AutoraterConfig(backend="http", model="m")
    with pytest.raises(ValidationError):
        AutoraterConfig(model="m", base_url="http://x", batch_sizes=3)


def test_local_causal_lm(tmp_path, gpt2_tok, monkeypatch):
    from condpt.tiny import tiny_causal_lm

    ckpt = tmp_path / "lm"
    tiny_causal_lm("gpt2", vocab_size=len(gpt2_tok), eos_token_id=gpt2_tok.eos_token_id,
                   max_positions=512).save_pretrained(ckpt)
    gpt2_tok.save_pretrained(ckpt)
    cfg = AutoraterConfig(backend="local", model=str(ckpt), cache_dir=tmp_path / "cache", batch_size=2,
                          prompt="Rogue AI? {text}\nAnswer:")
    rater = Autorater(cfg)
    texts = [ROGUE, PLAIN, "A third, much longer text about gardens and tomatoes in the summer sun."]
    s = rater.score(texts)
    assert s.dtype == np.float32 and s.shape == (3,) and np.all((s > 0) & (s < 1))
    # batching with left padding must not change a text's verdict
    solo = Autorater(cfg.model_copy(update={"batch_size": 1, "cache_dir": tmp_path / "c2"})).score(texts)
    np.testing.assert_allclose(s, solo, atol=1e-4)
    monkeypatch.setattr(Autorater, "_local", lambda self, t: pytest.fail("cache missed"))
    np.testing.assert_array_equal(Autorater(cfg).score(texts), s)
