"""What the local pool's forkserver loads before it forks workers: the run's cascade (lexicon, scorer, AI-referent
lexicon), so that every worker inherits it copy-on-write instead of each loading its own (issue 10).

`condpt.tagging.pool.start_forkserver` names this module last in the server's preload list and passes the run's
tag config in ``WARM_VAR`` (the server's environment only): as `condpt tag`'s options (the server starts before
the CLI has imported the config model, so that the two start-ups overlap) or as a config dump. On import here the
server builds the config as `condpt tag` does (`tag_config`), loads the cascade and registers it for the
`CondptTagger` steps of its children (`condpt.tagging.datatrove_steps.share_cascade`: a worker whose config is
another one loads its own, as without this). Then the server's objects are frozen out of the garbage collector
(`gc.freeze`): a worker's collections neither walk nor copy-on-write the server's heap (Python's advice for
forking servers).

Fails soft: whatever goes wrong here leaves each worker to load the cascade itself. Only static and fastText
scorers are loaded here (a torch model could start a CUDA context or a thread pool, neither of which survives a
fork), and only once trained (the main process trains a built-in on first use; two trainings would race).
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

WARM_VAR = "CONDPT_FORKSERVER_WARM"
FORK_SAFE_KINDS = ("static", "fasttext")  # scorers with no torch: the ones the server loads


def tag_config(config: str | Path | None = None, classifier: str | None = None, text_field: str | None = None,
               id_field: str | None = None):
    """The tag config `condpt tag`'s options give: the YAML `config` (else the defaults), its ``classifier.spec``
    replaced by `classifier`, its text and id fields by `text_field` and `id_field` when given."""
    from condpt.tagging.cascade import TagConfig

    cfg = TagConfig.from_yaml(config) if config else TagConfig()
    if classifier is not None:
        cfg = cfg.model_copy(update={"classifier": cfg.classifier.model_copy(update={"spec": classifier})})
    overrides = {k: v for k, v in (("text_field", text_field), ("id_field", id_field)) if v is not None}
    if overrides:
        cfg = TagConfig.model_validate({**cfg.model_dump(), **overrides})
    return cfg


def warm_cascade(payload: dict) -> None:
    """Load the cascade `payload` describes (``{"options": ...}``: `tag_config`'s arguments; ``{"config": ...}``:
    a `TagConfig` as plain data) and share it with the tagger steps of this process and its children."""
    from condpt.tagging.cascade import Cascade, TagConfig
    from condpt.tagging.datatrove_steps import share_cascade

    if "options" in payload:
        cfg = tag_config(**payload["options"])
    else:
        cfg = TagConfig.model_validate(payload["config"])
    cascade = Cascade(cfg)
    cascade.lexicon  # noqa: B018 (loads it)
    if cascade.classifier_enabled and _fork_safe(cfg.classifier.spec):
        # a first call loads what the scorer loads lazily (the AI-referent lexicon, the static word table)
        cascade.scorer.score(["An AI model wrote this sentence."])
    share_cascade(cascade)


def _fork_safe(spec: str) -> bool:
    """Whether the server may load scorer `spec`: a trained static or fastText scorer (no torch: a CUDA context,
    or a thread pool that has run, does not survive a fork). A built-in not trained yet is left to the main
    process, which trains it on first use (two trainings would race)."""
    from condpt.tagging.classifiers import BUILT_IN, read_scorer_json
    from condpt.tagging.expected import scorer_dir

    where = scorer_dir(spec)
    kind = BUILT_IN.get(spec) if spec in BUILT_IN else where and read_scorer_json(where).get("kind")
    return where is not None and kind in FORK_SAFE_KINDS


def _warm_from_environment() -> None:
    text = os.environ.get(WARM_VAR)
    if text is None:  # not the forkserver
        return
    try:
        if payload := json.loads(text):
            warm_cascade(payload)
    except Exception:  # noqa: BLE001, S110 (fails soft: each worker loads the cascade itself and reports errors)
        pass
    gc.freeze()  # no collection first: it would cost the server ~0.06 s before its first fork, for little


_warm_from_environment()
