"""condpt: conditional pretraining against self-fulfilling misalignment."""

import logging as _logging

__version__ = "0.1.0"

# DeepSpeed logs "Setting accelerator to CPU ..." to stdout in every CPU process that imports it, before any
# config is read; stdout is for results (tables, `--dry-run` YAML). A filter on its logger, which DeepSpeed
# keeps when it configures the logger, drops that one notice and nothing else.
_logging.getLogger("DeepSpeed").addFilter(lambda record: "Setting accelerator to CPU" not in record.getMessage())
