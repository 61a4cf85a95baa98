"""Logging, configured once at start: key=value lines (the default) or one JSON object a line.

Both carry the same fields, and both pass through the same filter that blanks out secrets.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from bot.config import RedactSecrets, Settings

KEY_VALUE_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


class JsonLines(logging.Formatter):
    """`event key=value …` messages become {"event": …, "key": "value", …} plus time, level,
    logger and the whole message; anything else stays in `message`."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        first = message.split("\n", 1)[0]
        words = first.split(" ")
        if words and words[0] and "=" not in words[0]:
            data["event"] = words[0]
            for word in words[1:]:
                key, sep, value = word.partition("=")
                if sep and key.isidentifier() and key not in data:
                    data[key] = value
        data["message"] = message
        if record.exc_info:  # RedactSecrets renders tracebacks into the message before this
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter(KEY_VALUE_FORMAT))
    handler.addFilter(RedactSecrets(settings.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # The Tencent SDK's debug output prints tokens and signatures: keep it quiet always.
    logging.getLogger("tencentcloud_sdk_common").setLevel(logging.WARNING)
    logging.getLogger("slack_bolt").setLevel(max(logging.INFO, root.level))
    logging.getLogger("alembic").setLevel(logging.WARNING)
