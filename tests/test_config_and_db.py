"""Configuration precedence, the --config wizard, and `flow db`."""

from __future__ import annotations

import json
import stat

from elasticcode import config


def test_precedence_options_then_environment_then_ini(home, monkeypatch):
    ini = home / "elasticcode.ini"
    config.save(ini, db="postgresql://a@h/ini", broker="redis://ini", backend="redis://ini-b")
    assert config.load().db == "postgresql://a@h/ini"
    monkeypatch.setenv("ELASTICCODE_DB", "postgresql://a@h/env")
    assert config.load().db == "postgresql://a@h/env"
    assert config.load(db="postgresql://a@h/opt").db == "postgresql://a@h/opt"
    assert config.load().backend == "redis://ini-b"
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600


def test_config_wizard_moves_password_out_of_the_ini(flow, home):
    answers = "postgresql://joe:hunter2@dbhost:5433/flows\nredis://localhost\npyamqp://localhost\n"
    result = flow("--config", input=answers)
    assert result.code == 0, result
    ini = (home / "elasticcode.ini").read_text()
    assert "hunter2" not in ini  # (the runner echoes typed input, so result.out shows what was typed)
    assert "postgresql://joe@dbhost:5433/flows?passfile=" in ini
    assert "broker" in ini and "pyamqp://localhost" in ini
    passfile = home / "pgpass"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert passfile.read_text() == "dbhost:5433:*:joe:hunter2\n"
    assert "Configuration file created at" in result.out


def test_malformed_ini_is_one_line(flow, home):
    (home / "elasticcode.ini").write_text("[database\nuri = x\n")
    result = flow("ls", "queues")
    assert result.code == 1 and "malformed" in result.err


def test_missing_ini_option_file(flow, home):
    result = flow("-i", str(home / "nope.ini"), "ls", "queues")
    assert result.code == 1 and "does not exist" in result.err


def test_db_commands(flow, db_url, sample_repo):
    assert flow("add", "queue", "-n", "q1").code == 0
    dumped = json.loads(flow("db", "json").out)
    assert [q["name"] for q in dumped["queue"]] == ["q1"]
    assert len(dumped["privilege"]) > 50
    assert "up to date" in flow("db", "migrate").out
    assert flow("db", "rebuild", "-y").code == 0
    assert json.loads(flow("db", "json").out)["queue"] == []
    assert flow("db", "drop", "-y").code == 0
    missing = flow("ls", "queues")
    assert missing.code == 1 and "flow db init" in missing.err
    init = flow("db", "init")
    assert init.code == 0 and "revision" in init.out
    assert flow("add", "queue", "-n", "q2").code == 0
