import json
import logging

from services.common.jsonlog import JsonFormatter


def test_records_become_one_json_object_with_extras_and_traceback() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("now",), sys.exc_info()
        )
    record.method = "GenerateImage"
    line = formatter.format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "failed now"
    assert entry["level"] == "error"
    assert entry["method"] == "GenerateImage"
    assert "ValueError: boom" in entry["traceback"]
