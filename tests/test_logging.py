"""Logging from the config: JSON lines on stderr and in a rotating file under the data dir."""

from __future__ import annotations

import json


def test_json_logging_writes_one_json_object_per_line_to_stderr_and_the_log_file(server_factory):
    srv = server_factory(
        {"MP_LOGGING__FORMAT": "json", "MP_LOGGING__FILE": "logs/messagepusher.log"}
    )
    assert srv.stop() == 0
    lines = [line for line in srv.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any("listening on http://127.0.0.1:" in r["message"] for r in records)
    assert {"ts", "level", "logger", "message"} <= set(records[0])
    logged = (srv.data_dir / "logs" / "messagepusher.log").read_text().splitlines()
    assert logged and all(json.loads(line)["message"] for line in logged)
    assert any(json.loads(line)["message"] == "stopped (exit 0)" for line in logged)
